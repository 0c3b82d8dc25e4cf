// Adds or clears the ACLs of a SASL user on the dev/CI broker, for `compose/stack kafka-acl`. Run as a single source
// file (`java -cp "kafka/lib/*" KafkaAcl.java BROKERS ...`) with the broker's own kafka-clients jar.
//
//   KafkaAcl BROKERS add USER TOPIC OP[,OP...]   allow USER the operations (WRITE, DESCRIBE, DESCRIBE_CONFIGS, ...)
//   KafkaAcl BROKERS clear USER                  delete every ACL that names USER
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaAcl {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            usage();
        }
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        String principal = "User:" + args[2];
        try (Admin admin = Admin.create(props)) {
            switch (args[1]) {
                case "add" -> {
                    if (args.length != 5) {
                        usage();
                    }
                    ResourcePattern topic = new ResourcePattern(ResourceType.TOPIC, args[3], PatternType.LITERAL);
                    List<AclBinding> bindings = new ArrayList<>();
                    for (String name : args[4].split(",")) {
                        AclOperation op = AclOperation.fromString(name.trim());
                        if (op == AclOperation.UNKNOWN) {
                            System.err.println("unknown operation: " + name);
                            System.exit(2);
                        }
                        bindings.add(new AclBinding(topic, new AccessControlEntry(principal, "*", op, AclPermissionType.ALLOW)));
                    }
                    admin.createAcls(bindings).all().get();
                    System.out.println("added " + args[4] + " on topic " + args[3] + " for " + principal);
                }
                case "clear" -> {
                    AclBindingFilter all = new AclBindingFilter(ResourcePatternFilter.ANY,
                            new AccessControlEntryFilter(principal, null, AclOperation.ANY, AclPermissionType.ANY));
                    int n = admin.deleteAcls(List.of(all)).all().get().size();
                    System.out.println("removed " + n + " ACL(s) of " + principal);
                }
                default -> usage();
            }
        }
    }

    private static void usage() {
        System.err.println("usage: KafkaAcl BROKERS add USER TOPIC OP[,OP...] | KafkaAcl BROKERS clear USER");
        System.exit(2);
    }
}
