//! What each fuzz target does with one input. Shared, via `#[path]`, with
//! `tests/fuzz_corpus.rs`, so the stable replay of the corpus runs exactly the
//! code the fuzzer ran. Every function panics only when bunny misbehaves:
//! errors from the parsers are the expected outcome for most inputs.

use std::fs;
use std::path::Path;

use bunny::bunnyfile::{PackageReq, Pos};
use bunny::frameworks::freebsd::repo::Catalogue;
use bunny::oci::registry::{parse_manifest_or_index, ManifestDoc, PlatformWanted};

/// The targets, by the name of their corpus directory.
pub const TARGETS: &[&str] = &[
    "bunnyfile",
    "containerfile",
    "unpack",
    "manifest",
    "catalogue",
];

/// Runs `target` on `data`; `base` is a directory the unpack target may
/// make scratch directories in (it must hold nothing else).
pub fn run(target: &str, data: &[u8], base: &Path) {
    match target {
        "bunnyfile" => bunnyfile(data),
        "containerfile" => containerfile(data),
        "unpack" => unpack(data, base),
        "manifest" => manifest(data),
        "catalogue" => catalogue(data),
        other => panic!("no fuzz target `{other}`"),
    }
}

pub fn bunnyfile(data: &[u8]) {
    // The model and the errors are rendered for the user; render both.
    match bunny::bunnyfile::parse_bytes("BunnyFile", data) {
        Ok(parsed) => {
            let _ = format!("{parsed:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

pub fn containerfile(data: &[u8]) {
    match bunny::containerfile::parse_bytes("Containerfile", data) {
        Ok(parsed) => {
            let _ = format!("{parsed:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Unpacks `data` into `<scratch>/target` and asserts nothing was created
/// beside it (nor beside the scratch directory in `base`).
pub fn unpack(data: &[u8], base: &Path) {
    let scratch = tempfile::tempdir_in(base).expect("scratch directory");
    let target = scratch.path().join("target");
    fs::create_dir(&target).expect("target directory");
    let _ = bunny::layers::unpack::unpack_tar(data, &target);
    let beside: Vec<String> = fs::read_dir(scratch.path())
        .expect("reading the scratch directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside, ["target"], "unpack wrote outside its target");
    let scratch_name = scratch.path().file_name().expect("name").to_owned();
    let in_base: Vec<_> = fs::read_dir(base)
        .expect("reading the base directory")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(in_base, [scratch_name], "unpack wrote outside its target");
}

pub fn manifest(data: &[u8]) {
    // What `bunny pull` does with a registry's answer, for a few platforms.
    for p in ["linux/amd64", "amd64", "arm64", "qemu/amd64"] {
        let Some(want) = PlatformWanted::parse(p) else {
            panic!("PlatformWanted::parse({p}) failed");
        };
        match parse_manifest_or_index(data, None, &want) {
            Ok(ManifestDoc::Manifest(m)) => {
                let _ = m.config().digest().to_string();
                for l in m.layers() {
                    let _ = (l.digest().to_string(), l.size(), l.media_type().to_string());
                }
            }
            Ok(ManifestDoc::Index { child, available }) => {
                let _ = (child, available);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    // The local store and image_fs read manifests and indexes with oci-spec.
    let _ = oci_spec::image::ImageManifest::from_reader(data);
    let _ = oci_spec::image::ImageIndex::from_reader(data);
    let _ = serde_json::from_slice::<oci_spec::image::ImageManifest>(data);
    let _ = serde_json::from_slice::<oci_spec::image::ImageIndex>(data);
}

pub fn catalogue(data: &[u8]) {
    let Ok(cat) = Catalogue::parse("https://fuzz.invalid/repo", data) else {
        return;
    };
    // Resolving every package walks every dependency edge the input made.
    let wanted: Vec<PackageReq> = cat
        .packages
        .keys()
        .map(|name| PackageReq {
            name: name.clone(),
            version: None,
            pos: Pos { line: 1, col: 1 },
        })
        .collect();
    let _ = cat.resolve(&wanted);
}
