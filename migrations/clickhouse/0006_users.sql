-- Users as UsersChanged carried them, a dimension like departments (0002_dimensions.sql): a ReplacingMergeTree on the
-- change's version (its time in microseconds), so the newest change of a user wins and folding the same event twice
-- writes the same row again. Readers use FINAL or argMax(.., version). It holds who a user is and what they may do,
-- never a token or a secret, which the event does not carry. A rebuild creates and swaps it with the other
-- aggregate tables ({v}).
CREATE TABLE IF NOT EXISTS users{v} (
    company_id UUID,
    user_id    UUID,
    email      String,
    name       String,
    role       String,
    is_active  UInt8,
    version    UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (company_id, user_id)
