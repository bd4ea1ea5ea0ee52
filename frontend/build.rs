//! Generates the gateway client and LLB messages from the vendored protos.
//! Maps become BTreeMaps so an op's encoding (and so its digest) is the same
//! on every run.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/gateway.proto",
        "proto/ops.proto",
        "proto/caps.proto",
        "proto/stat.proto",
        "proto/status.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .build_server(false)
        .btree_map(".")
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
