//! Crash safety of the collection store through the CLI (being written).
