//! SBOM and provenance on built images: attached as BuildKit lays them out
//! (an index holding the image manifest and an attestation manifest), read
//! back with skopeo from an OCI layout and from a real registry after a push
//! and a `skopeo copy --all`, the image manifest's digest unchanged by
//! attaching them, and the same inputs giving the same index.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use common::ok;
use common::registry::Registry;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn bunny(root: &Path, args: &[&str]) -> Output {
    common::output(
        common::bunny(root)
            .env_remove("BUILDX_NO_DEFAULT_ATTESTATIONS")
            .args(args),
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn json_file(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

/// Every regular file under `dir`, as `/relative/path` -> sha256.
fn files_under(dir: &Path, prefix: &str, out: &mut BTreeSet<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let ty = e.file_type().unwrap();
        let guest = format!("{prefix}/{}", e.file_name().to_string_lossy());
        if ty.is_dir() {
            files_under(&e.path(), &guest, out);
        } else if ty.is_file() {
            out.insert((guest, sha256_hex(&std::fs::read(e.path()).unwrap())));
        }
    }
}

/// The statements an attestation manifest in `layout` carries, by
/// predicate type, after checking its layout against BuildKit's.
fn statements(layout: &Path, index: &Value, image_digest: &str) -> Vec<(String, Value)> {
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    assert_eq!(entries[0]["digest"], image_digest, "the image comes first");
    assert_eq!(entries[0]["platform"]["os"], "linux");
    let att = &entries[1];
    assert_eq!(att["platform"]["os"], "unknown");
    assert_eq!(att["platform"]["architecture"], "unknown");
    assert_eq!(
        att["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        att["annotations"]["vnd.docker.reference.digest"],
        image_digest
    );
    let m: Value = serde_json::from_slice(&blob(layout, att["digest"].as_str().unwrap())).unwrap();
    let config: Value =
        serde_json::from_slice(&blob(layout, m["config"]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(config["os"], "unknown");
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["mediaType"], "application/vnd.in-toto+json");
            let s: Value =
                serde_json::from_slice(&blob(layout, l["digest"].as_str().unwrap())).unwrap();
            let pt = l["annotations"]["in-toto.io/predicate-type"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(s["predicateType"], pt.as_str());
            assert_eq!(
                s["subject"][0]["digest"]["sha256"],
                image_digest.trim_start_matches("sha256:"),
                "the statement is about the image manifest"
            );
            (pt, s)
        })
        .collect()
}

fn build(root: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build", "--progress=plain", "-t", "hello:1"];
    args.extend_from_slice(extra);
    let ctx = common::hello_linux();
    args.push(ctx.to_str().unwrap());
    ok(bunny(root, &args), "bunny build")
        .trim()
        .lines()
        .last()
        .unwrap()
        .to_string()
}

#[test]
fn sbom_and_provenance_are_attached_like_buildkit_and_leave_the_image_alone() {
    let skopeo = common::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    // A local build attaches nothing unasked.
    let bare = build(
        &tmp.path().join("s0"),
        &["-o", &format!("type=oci,dest={}", plain.display())],
    );
    let top = json_file(&plain.join("index.json"));
    assert_eq!(
        top["manifests"][0]["digest"], bare,
        "without attestations the layout names the image manifest itself"
    );

    let mut indexes = Vec::new();
    for run in ["s1", "s2"] {
        let layout = tmp.path().join(format!("{run}-layout"));
        let docker = tmp.path().join(format!("{run}.tar"));
        let digest = build(
            &tmp.path().join(run),
            &[
                "--sbom",
                "--provenance",
                "-o",
                &format!("type=oci,dest={}", layout.display()),
                "-o",
                &format!("type=docker,dest={}", docker.display()),
            ],
        );
        assert_eq!(digest, bare, "attaching attestations changes no image byte");
        let top = json_file(&layout.join("index.json"));
        let entry = &top["manifests"][0];
        assert_eq!(
            entry["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            entry["annotations"]["org.opencontainers.image.ref.name"],
            "1"
        );
        let index_digest = entry["digest"].as_str().unwrap().to_string();
        // skopeo reads the layout's index, and the image by its digest.
        let raw = common::run(Command::new(&skopeo).args([
            "inspect",
            "--raw",
            &format!("oci:{}:1", layout.display()),
        ]));
        assert_eq!(
            format!("sha256:{}", sha256_hex(raw.as_bytes())),
            index_digest
        );
        let index: Value = serde_json::from_str(&raw).unwrap();
        let st = statements(&layout, &index, &bare);
        let types: Vec<&str> = st.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "https://spdx.dev/Document",
                "https://slsa.dev/provenance/v1"
            ]
        );

        // The SBOM names exactly the inputs: the kernel and every included
        // file, each by digest; the provenance names the BunnyFile and the
        // kernel.
        let sbom = &st[0].1["predicate"];
        assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
        let kernel = sha256_hex(&std::fs::read(common::hello_linux().join("vmlinuz")).unwrap());
        let packages: Vec<(String, String)> = sbom["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["versionInfo"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            packages,
            [
                ("hello:1".to_string(), bare.clone()),
                ("kernel".to_string(), format!("sha256:{kernel}")),
            ]
        );
        let files: BTreeSet<(String, String)> = sbom["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let sum = f["checksums"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["algorithm"] == "SHA256")
                    .unwrap();
                (
                    f["fileName"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches('.')
                        .to_string(),
                    sum["checksumValue"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let mut expected = BTreeSet::new();
        files_under(&common::hello_linux().join("rootfs"), "", &mut expected);
        assert_eq!(files, expected);
        let prov = &st[1].1["predicate"]["buildDefinition"];
        let bunnyfile =
            sha256_hex(&std::fs::read(common::hello_linux().join("BunnyFile")).unwrap());
        let deps: Vec<(String, String)> = prov["resolvedDependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["uri"].as_str().unwrap().to_string(),
                    d["digest"]["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            deps,
            [
                ("BunnyFile".to_string(), bunnyfile.clone()),
                ("vmlinuz".to_string(), kernel.clone()),
            ]
        );
        assert_eq!(prov["externalParameters"]["bunnyfile"]["path"], "BunnyFile");
        // Nothing from the host or the clock.
        let text = raw_statements(&st);
        assert!(!text.contains(tmp.path().to_str().unwrap()), "{text}");
        let host = hostname();
        assert!(
            !text
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                .any(|word| word == host),
            "the host name leaked: {text}"
        );

        // An OCI archive names the same index; a docker archive holds the
        // image alone (docker load reads one).
        let archive = tmp.path().join(format!("{run}.oci.tar"));
        ok(
            bunny(
                &tmp.path().join(run),
                &[
                    "build",
                    "--progress=plain",
                    "--sbom",
                    "--provenance",
                    "-t",
                    "hello:1",
                    "-o",
                    &format!("type=oci-archive,dest={}", archive.display()),
                    common::hello_linux().to_str().unwrap(),
                ],
            ),
            "bunny build -o type=oci-archive",
        );
        let in_tar: Value = serde_json::from_str(&common::run(
            Command::new("tar")
                .arg("-xOf")
                .arg(&archive)
                .arg("index.json"),
        ))
        .unwrap();
        assert_eq!(in_tar["manifests"][0]["digest"], index_digest.as_str());
        let tar = common::run(
            Command::new("tar")
                .arg("-xOf")
                .arg(&docker)
                .arg("manifest.json"),
        );
        let m: Value = serde_json::from_str(&tar).unwrap();
        assert_eq!(m.as_array().unwrap().len(), 1);

        // bunny inspect summarises and prints them.
        let text = ok(
            bunny(&tmp.path().join(run), &["inspect", "hello:1"]),
            "inspect",
        );
        let line = format!(
            "https://spdx.dev/Document: SPDX SPDX-2.3: 2 packages, {} files",
            expected.len()
        );
        assert!(text.contains(&line), "{text}");
        assert!(
            text.contains(
                "https://slsa.dev/provenance/v1: SLSA v1 provenance: 2 resolved dependencies"
            ),
            "{text}"
        );
        let printed: Value = serde_json::from_str(&ok(
            bunny(
                &tmp.path().join(run),
                &["inspect", "--format", "sbom", "hello:1"],
            ),
            "inspect --format sbom",
        ))
        .unwrap();
        assert_eq!(printed, st[0].1);
        indexes.push(index_digest);
    }
    assert_eq!(indexes[0], indexes[1], "the same inputs, the same index");

    // The bare store's image has none to print.
    let none = bunny(
        &tmp.path().join("s0"),
        &["inspect", "--format", "provenance", "hello:1"],
    );
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no provenance attestation"));
}

fn raw_statements(st: &[(String, Value)]) -> String {
    st.iter().map(|(_, v)| v.to_string()).collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn attestations_survive_push_and_pull() {
    let skopeo = common::require_tool("skopeo");
    let reg = Registry::start_http();
    let tmp = tempfile::tempdir().unwrap();
    let reference = format!("{}/att/hello:1", reg.host());
    let meta = tmp.path().join("meta.json");
    let root = tmp.path().join("s");
    let ctx = common::hello_linux();
    let image = ok(
        bunny(
            &root,
            &[
                "build",
                "--progress=plain",
                "--sbom",
                "-t",
                &reference,
                "--push",
                "--metadata-file",
                meta.to_str().unwrap(),
                ctx.to_str().unwrap(),
            ],
        ),
        "bunny build --push",
    )
    .trim()
    .lines()
    .last()
    .unwrap()
    .to_string();
    let m = json_file(&meta);
    let raw = common::run(Command::new(&skopeo).args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{reference}"),
    ]));
    let index_digest = format!("sha256:{}", sha256_hex(raw.as_bytes()));
    assert_eq!(
        m["containerimage.digest"],
        index_digest.as_str(),
        "buildx's metadata names what was pushed"
    );
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(index["manifests"][0]["digest"], image.as_str());

    // skopeo copy --all brings the whole index, attestations included; the
    // statements are the ones bunny stored.
    let copied = tmp.path().join("copied");
    common::run(Command::new(&skopeo).args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci:{}:1", copied.display()),
    ]));
    let st = statements(&copied, &index, &image);
    assert_eq!(st.len(), 2);
    for (kind, (_, pulled)) in ["sbom", "provenance"].iter().zip(&st) {
        let local: Value = serde_json::from_str(&ok(
            bunny(&root, &["inspect", "--format", kind, &reference]),
            "inspect --format",
        ))
        .unwrap();
        assert_eq!(&local, pulled);
    }

    // A push carries provenance by default; --provenance=false pushes the
    // bare image manifest under the tag.
    let bare_ref = format!("{}/att/hello:bare", reg.host());
    let bare = ok(
        bunny(
            &root,
            &[
                "build",
                "--progress=plain",
                "--provenance=false",
                "-t",
                &bare_ref,
                "--push",
                ctx.to_str().unwrap(),
            ],
        ),
        "bunny build --push --provenance=false",
    );
    let raw_bare = common::run(Command::new(&skopeo).args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{bare_ref}"),
    ]));
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw_bare.as_bytes())),
        bare.trim().lines().last().unwrap()
    );
    assert_eq!(bare.trim().lines().last().unwrap(), image);

    // bunny pull picks the image for the platform, and keeps the
    // attestations the index carries for it.
    let other = tmp.path().join("other");
    ok(
        common::bunny(&other)
            .args(["pull", &reference])
            .output()
            .unwrap(),
        "bunny pull",
    );
    let inspected: Value = serde_json::from_str(&ok(
        bunny(&other, &["inspect", "--json", &reference]),
        "inspect the pulled image",
    ))
    .unwrap();
    assert_eq!(inspected["manifest_digest"], image.as_str());
    // (Compared with what skopeo copied: the builder's store has since
    // rebuilt the same image without attestations.)
    for (kind, (_, copied)) in ["sbom", "provenance"].iter().zip(&st) {
        let pulled: Value = serde_json::from_str(&ok(
            bunny(&other, &["inspect", "--format", kind, &reference]),
            "inspect --format (the pulled store)",
        ))
        .unwrap();
        assert_eq!(&pulled, copied, "{kind}");
    }
    // A bare image pulls as before, with nothing recorded.
    let bare_store = tmp.path().join("bare");
    ok(
        common::bunny(&bare_store)
            .args(["pull", &bare_ref])
            .output()
            .unwrap(),
        "bunny pull (bare)",
    );
    let out = bunny(
        &bare_store,
        &["inspect", "--format", "provenance", &bare_ref],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no provenance attestation"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn docker_loads_the_image_of_an_attested_build() {
    let docker = common::Dockerd::start();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("hello.tar");
    let root = tmp.path().join("s");
    let out = bunny(
        &root,
        &[
            "build",
            "--progress=plain",
            "--sbom",
            "--provenance",
            "-t",
            "hello:att",
            "-o",
            &format!("type=docker,dest={}", archive.display()),
            common::hello_linux().to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out, "bunny build -o type=docker");
    assert!(
        stderr.contains("docker archives carry no attestations"),
        "the dropped attestations are reported: {stderr}"
    );
    let loaded = common::run(docker.docker().arg("load").arg("-i").arg(&archive));
    assert!(loaded.contains("Loaded image: hello:att"), "{loaded}");
    // The loaded image is the attested one: its config is the image's.
    let report: Value = serde_json::from_str(&ok(
        bunny(&root, &["inspect", "--json", "hello:att"]),
        "inspect",
    ))
    .unwrap();
    let id =
        common::run(
            docker
                .docker()
                .args(["image", "inspect", "--format", "{{.Id}}", "hello:att"]),
        );
    assert_eq!(id.trim(), report["config"]["digest"].as_str().unwrap());
    assert!(report["attestations"]
        .as_object()
        .is_some_and(|a| a.len() == 2));
}
