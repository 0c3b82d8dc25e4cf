// Deletes the topics the tests made (`kerp.test.*`: one per test binary and run, each with its own partitions) from the
// dev/CI broker, for `compose/stack kafka-prune-tests`. Run as a single source file
// (`java -cp "kafka/lib/*" KafkaPruneTestTopics.java BROKERS`) with the broker's own kafka-clients jar.
//
// Why: the tests never delete their topics (CI's independent Avro reader reads them after the tests), so a long-lived
// dev broker collects hundreds of partitions, and each costs the broker memory (its index and segment files are
// mapped) and start-up time. Only `kerp.test.` names are touched: the dev stack's own topics stay.
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;

public class KafkaPruneTestTopics {
    /** The prefix every test topic has (e2e/tests/common, stream-workers/tests/common); nothing else is deleted. */
    static final String TEST_TOPIC_PREFIX = "kerp.test.";
    /** How long the broker may take to list and delete them. */
    static final long ADMIN_WAIT_SECONDS_MAX = 120;

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: KafkaPruneTestTopics BROKERS");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        try (Admin admin = Admin.create(props)) {
            Set<String> all = admin.listTopics().names().get(ADMIN_WAIT_SECONDS_MAX, TimeUnit.SECONDS);
            List<String> tests = all.stream().filter(t -> t.startsWith(TEST_TOPIC_PREFIX)).sorted().toList();
            if (!tests.isEmpty()) {
                admin.deleteTopics(tests).all().get(ADMIN_WAIT_SECONDS_MAX, TimeUnit.SECONDS);
            }
            System.out.println("deleted " + tests.size() + " test topics; " + (all.size() - tests.size()) + " others kept");
        }
    }
}
