//! `docker load` (dockerd 20.10) takes bunny's docker-archive output and
//! keeps the urunc labels.

mod common;

use std::collections::BTreeMap;

use bunny::layers::store::Store;
use bunny::oci::output::{export, Output};
use common::image::{build_sample, random_bytes};
use common::{run, Dockerd};

#[test]
fn docker_loads_the_docker_archive() {
    let docker = Dockerd::start();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let s = build_sample(&store, &tmp.path().join("src"), &random_bytes(256 * 1024));
    let archive = tmp.path().join("docker.tar");
    let tags = vec![
        "hello".to_string(),
        "docker.io/library/hello:v1".to_string(),
        "localhost:5000/unikernels/hello:2".to_string(),
    ];
    export(
        &store,
        &s.manifest,
        &tags,
        &Output::DockerArchive {
            file: archive.clone(),
        },
    )
    .unwrap();

    let loaded = run(docker.docker().arg("load").arg("-i").arg(&archive));
    for tag in [
        "hello:latest",
        "hello:v1",
        "localhost:5000/unikernels/hello:2",
    ] {
        assert!(
            loaded.contains(&format!("Loaded image: {tag}")),
            "{tag} not loaded:\n{loaded}\ndockerd log:\n{}",
            docker.log()
        );
    }
    let inspect = |format: &str, name: &str| {
        run(docker
            .docker()
            .args(["image", "inspect", "--format", format, name]))
        .trim()
        .to_string()
    };
    let labels: BTreeMap<String, String> =
        serde_json::from_str(&inspect("{{json .Config.Labels}}", "hello:latest")).unwrap();
    assert_eq!(labels, s.labels);
    // Docker's image ID is the config digest: the config went in unchanged.
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.read_blob(s.manifest.digest().as_ref()).unwrap()).unwrap();
    assert_eq!(
        inspect("{{.Id}}", "hello:v1"),
        manifest["config"]["digest"].as_str().unwrap()
    );
    let diff_ids: Vec<String> =
        serde_json::from_str(&inspect("{{json .RootFS.Layers}}", "hello:latest")).unwrap();
    let expected: Vec<String> = s.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(diff_ids, expected);
    assert_eq!(
        inspect("{{.Os}}/{{.Architecture}}", "hello:latest"),
        "linux/amd64"
    );
    assert_eq!(
        inspect("{{json .Config.Cmd}}", "hello:latest"),
        r#"["/bin/httpd","-f"]"#
    );

    // The kernel reaches a container filesystem intact (docker create + cp,
    // no need to run anything).
    let id = run(docker.docker().args(["create", "hello:latest", "/none"]))
        .trim()
        .to_string();
    let out = tmp.path().join("kernel.out");
    run(docker
        .docker()
        .args(["cp", &format!("{id}:/.boot/kernel")])
        .arg(&out));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&s.kernel).unwrap()
    );
}
