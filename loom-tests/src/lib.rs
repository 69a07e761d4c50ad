//! Model checks run with `RUSTFLAGS="--cfg loom" cargo test -p traffik-loom-tests --release`.
//! Without `--cfg loom` the tests in `tests/` compile to nothing.
