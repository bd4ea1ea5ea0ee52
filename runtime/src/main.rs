//! `bunny-runtime`: the runc-compatible entry point (issue 6).

use bunny_runtime::RuntimeError;

fn main() {
    let err = RuntimeError::NotImplemented {
        what: "bunny-runtime (the runc-compatible runtime)",
        issue: 6,
    };
    eprintln!("bunny-runtime: {err}");
    std::process::exit(2);
}
