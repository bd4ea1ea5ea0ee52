//! bunny: build and package applications as unikernels and single-application
//! kernels, shipped as OCI images that urunc (and bunny's own runtime) boot.
//!
//! The modules follow the pipeline: a BunnyFile is parsed and validated
//! ([`bunnyfile`]), its framework decides what is supported and which layers it
//! needs ([`frameworks`]), rootfs writers and the store turn files into blobs
//! ([`layers`]), images are assembled and written out ([`oci`]), and toolchain
//! steps run in build containers ([`build`]). [`pipeline`] ties the stages
//! together for `bunny build`; [`cli`] is the only place that uses `anyhow`.

pub mod build;
pub mod bunnyfile;
// Issue 11: Containerfile input (parser + image build).
pub mod cli;
pub mod containerfile;
pub mod frameworks;
pub mod layers;
pub mod oci;
pub mod pipeline;
pub mod platform;

/// An error and its causes on one line, `: `-separated. Some errors already
/// quote their cause in their own message (and rustls or hyper say what went
/// wrong only deep in the chain): a cause said once is not said again.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg
}
