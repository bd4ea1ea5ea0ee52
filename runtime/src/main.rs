//! `bunny-runtime`: the runc-compatible OCI runtime (see `bunny_runtime::oci`).

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(bunny_runtime::oci::main(args));
}
