//! Rebuilds ingest-api when a Postgres migration is added. `sqlx::migrate!` embeds the files it saw at compile time and
//! notices edits to them, but not a new file in the directory; a binary without it would refuse to start against a
//! database that already has it applied.

fn main() {
    println!("cargo:rerun-if-changed=../migrations/postgres");
}
