//! bunny: build and package applications as unikernels and single-application
//! kernels, shipped as OCI images that urunc (and bunny's own runtime) boot.
//!
//! The modules follow the pipeline: a BunnyFile is parsed and validated
//! ([`bunnyfile`]), its framework decides what is supported and which layers it
//! needs ([`frameworks`]), rootfs writers and the store turn files into blobs
//! ([`layers`]), images are assembled and written out ([`oci`]), and toolchain
//! steps run in build containers ([`build`]). [`pipeline`] ties the stages
//! together for `bunny build`; [`cli`] is the only place that uses `anyhow`.

pub mod attestations;
pub mod build;
pub mod bunnyfile;
pub mod cli;
pub mod containerfile;
pub mod door;
pub mod frameworks;
pub mod layers;
pub mod model;
pub mod oci;
pub mod pipeline;
pub mod platform;
pub mod runs;
pub mod volumes;

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

/// "3 images: a, b, c": at most a handful of items and a count, so that a
/// list of 10 000 (an index's entries, a layout's images) still makes a
/// short one-line error.
pub fn summarize(items: &[String], noun: &str, nouns: &str) -> String {
    const SHOWN: usize = 5;
    let n = items.len();
    let mut text = match n {
        0 => return format!("no {nouns}"),
        1 => format!("1 {noun}: "),
        _ => format!("{n} {nouns}: "),
    };
    text.push_str(&items[..n.min(SHOWN)].join(", "));
    if n > SHOWN {
        text.push_str(&format!(" and {} more", n - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn summaries_stay_short() {
        let many: Vec<String> = (0..10_000).map(|i| format!("img:{i}")).collect();
        assert_eq!(
            super::summarize(&many, "image", "images"),
            "10000 images: img:0, img:1, img:2, img:3, img:4 and 9995 more"
        );
        assert_eq!(
            super::summarize(&["a".into()], "image", "images"),
            "1 image: a"
        );
        assert_eq!(super::summarize(&[], "image", "images"), "no images");
    }
}
