//! Shared helpers for the runnable examples (none yet); the examples live beside this file.
