//! The command line: one module per verb; the only place `anyhow` is used.
