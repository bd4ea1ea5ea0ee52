//! Registries that lie, refuse, fail or stall: `bunny pull` must say what
//! happened and what to do, and leave the store without a half image.

use sha2::{Digest, Sha256};

use crate::server::{Endless, Hostile, Reply};
use crate::{bunny, Sandbox};

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A one-layer image: (manifest bytes, config bytes, layer bytes).
fn image() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let layer = b"pretend this is a layer tar".to_vec();
    let config = serde_json::json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[digest(&layer)]}}).to_string().into_bytes();
    let manifest = serde_json::json!({"schemaVersion":2,"mediaType":MANIFEST_TYPE,
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":digest(&config),"size":config.len()},
        "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":digest(&layer),"size":layer.len()}]})
    .to_string()
    .into_bytes();
    (manifest, config, layer)
}

fn pull(sb: &Sandbox, reference: &str, extra: &[&str]) -> crate::Refusal {
    let store = sb.path().join("store");
    let mut args = vec!["pull", "--progress=plain"];
    args.extend_from_slice(extra);
    args.push(reference);
    bunny(&store, &args)
}

fn assert_not_named(sb: &Sandbox) {
    if let Ok(text) = std::fs::read_to_string(sb.path().join("store/index.json")) {
        assert!(
            !text.contains("hostile"),
            "a failed pull named an image: {text}"
        );
    }
}

#[test]
fn a_blob_whose_digest_does_not_match() {
    let (manifest, config, layer) = image();
    let (m, c, l) = (digest(&manifest), digest(&config), digest(&layer));
    let wanted = l.clone();
    let srv = Hostile::start(move |_, path| {
        if path == "/v2/" {
            Reply::new(200, "application/json", "{}")
        } else if path.contains("/manifests/") {
            Reply::new(200, MANIFEST_TYPE, manifest.clone()).header("Docker-Content-Digest", &m)
        } else if path.ends_with(&c) {
            Reply::new(200, "application/octet-stream", config.clone())
        } else if path.ends_with(&l) {
            Reply::new(
                200,
                "application/octet-stream",
                b"not the bytes you asked for".to_vec(),
            )
        } else {
            Reply::new(404, "application/json", "{}")
        }
    });
    let sb = Sandbox::new();
    pull(&sb, &format!("{}/hostile/img:1", srv.host()), &[]).says(&wanted);
    assert_not_named(&sb);
    let verify = bunny(&sb.path().join("store"), &["store", "verify"]);
    assert!(verify.out.status.success(), "{}", verify.stderr());
}

#[test]
fn an_index_with_no_matching_platform() {
    let (manifest, _, _) = image();
    let index =
        serde_json::json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
        "manifests":[{"mediaType":MANIFEST_TYPE,"digest":digest(&manifest),"size":manifest.len(),
        "platform":{"architecture":"s390x","os":"linux"}}]})
        .to_string();
    let srv = Hostile::start(move |_, path| {
        if path == "/v2/" {
            Reply::new(200, "application/json", "{}")
        } else if path.contains("/manifests/") {
            Reply::new(
                200,
                "application/vnd.oci.image.index.v1+json",
                index.clone(),
            )
        } else {
            Reply::new(404, "application/json", "{}")
        }
    });
    let sb = Sandbox::new();
    pull(
        &sb,
        &format!("{}/hostile/img:1", srv.host()),
        &["--platform", "linux/amd64"],
    )
    .says("its index has 1 entry: linux/s390x");
    assert_not_named(&sb);
}

fn refusing(
    status: u16,
    body: serde_json::Value,
    extra: Option<(&'static str, &'static str)>,
) -> Hostile {
    Hostile::start(move |_, _| {
        let r = Reply::json(status, &body);
        match extra {
            Some((k, v)) => r.header(k, v),
            None => r,
        }
    })
}

#[test]
fn a_401_says_to_log_in() {
    let srv = refusing(
        401,
        serde_json::json!({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}),
        Some(("WWW-Authenticate", "Basic realm=\"hostile\"")),
    );
    let sb = Sandbox::new();
    pull(&sb, &format!("{}/hostile/img:1", srv.host()), &[]).says("bunny login");
    assert_not_named(&sb);
}

#[test]
fn a_403_is_reported_as_denied() {
    let srv = Hostile::start(|_, path| {
        if path == "/v2/" {
            Reply::new(200, "application/json", "{}")
        } else {
            Reply::json(
                403,
                &serde_json::json!({"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}),
            )
        }
    });
    let sb = Sandbox::new();
    pull(&sb, &format!("{}/hostile/img:1", srv.host()), &[])
        .says("denied access to `hostile/img` (403 Forbidden)");
    assert_not_named(&sb);
}

#[test]
fn a_500_quotes_the_registrys_message() {
    let srv = Hostile::start(|_, path| {
        if path == "/v2/" {
            Reply::new(200, "application/json", "{}")
        } else {
            Reply::json(
                500,
                &serde_json::json!({"errors":[{"code":"UNKNOWN","message":"storage backend on fire"}]}),
            )
        }
    });
    let sb = Sandbox::new();
    pull(&sb, &format!("{}/hostile/img:1", srv.host()), &[]).says("storage backend on fire");
    assert_not_named(&sb);
}

#[test]
fn a_slow_trickle_times_out() {
    let (manifest, _, _) = image();
    let srv = Hostile::start(move |_, path| {
        if path == "/v2/" {
            Reply::new(200, "application/json", "{}")
        } else {
            let mut r = Reply::new(200, MANIFEST_TYPE, manifest.clone());
            r.trickle = true;
            r
        }
    });
    let sb = Sandbox::new();
    let t0 = std::time::Instant::now();
    pull(
        &sb,
        &format!("{}/hostile/img:1", srv.host()),
        &["--registry-timeout", "2"],
    )
    .says("timed out");
    assert!(
        t0.elapsed().as_secs() < 60,
        "gave up only after {:?}",
        t0.elapsed()
    );
    assert_not_named(&sb);
}

const MIB: u64 = 1024 * 1024;

/// Serves `manifest` for any tag, `config` under its digest and `layer`
/// for every other blob.
fn registry_with_layer(manifest: Vec<u8>, config: Vec<u8>, layer: Reply) -> Hostile {
    let c = digest(&config);
    let layer = std::sync::Mutex::new(Some(layer));
    Hostile::start(move |_, path| {
        if path == "/v2/" {
            Reply::new(200, "application/json", "{}")
        } else if path.contains("/manifests/") {
            Reply::new(200, MANIFEST_TYPE, manifest.clone())
        } else if path.ends_with(&c) {
            Reply::new(200, "application/octet-stream", config.clone())
        } else {
            layer
                .lock()
                .unwrap()
                .take()
                .unwrap_or_else(|| Reply::new(404, "application/json", "{}"))
        }
    })
}

/// A manifest that declares `layer_size` for a one-layer image.
fn declaring(layer_size: u64) -> (Vec<u8>, Vec<u8>) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let manifest = serde_json::json!({"schemaVersion":2,"mediaType":MANIFEST_TYPE,
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":digest(&config),"size":config.len()},
        "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar",
            "digest":format!("sha256:{}", "ab".repeat(32)),"size":layer_size}]})
    .to_string()
    .into_bytes();
    (manifest, config)
}

fn serving_manifest(body: Endless) -> Hostile {
    Hostile::start(move |_, path| {
        if path == "/v2/" {
            Reply::new(200, "application/json", "{}")
        } else {
            let mut r = Reply::new(200, MANIFEST_TYPE, Vec::new());
            r.endless = Some(body.clone());
            r
        }
    })
}

/// Bytes the server got out before bunny hung up include what the two
/// kernels' socket buffers hold; 32 MiB is far above that and far below the
/// 256 MiB an unbounded reader takes.
fn assert_cut_off(body: &Endless) {
    assert!(
        body.sent() < 32 * MIB,
        "bunny read {} MiB before refusing",
        body.sent() / MIB
    );
}

#[test]
fn a_huge_manifest_is_cut_off_while_reading() {
    let body = Endless::fast(256 * MIB, None);
    let srv = serving_manifest(body.clone());
    let sb = Sandbox::new();
    pull(&sb, &format!("{}/hostile/img:1", srv.host()), &[])
        .says("more than a manifest can sensibly be");
    assert_cut_off(&body);
    assert_not_named(&sb);
}

#[test]
fn a_huge_manifest_is_refused_by_its_content_length() {
    let body = Endless::fast(256 * MIB, Some(1536 * MIB));
    let srv = serving_manifest(body.clone());
    let sb = Sandbox::new();
    pull(&sb, &format!("{}/hostile/img:1", srv.host()), &[])
        .says(&format!("is {} bytes", 1536 * MIB));
    assert_cut_off(&body);
    assert_not_named(&sb);
}

#[test]
fn a_blob_longer_than_declared_is_cut_off() {
    let (manifest, config) = declaring(100);
    for announce in [None, Some(3 * 1024 * MIB)] {
        let body = Endless::fast(256 * MIB, announce);
        let mut layer = Reply::new(200, "application/octet-stream", Vec::new());
        layer.endless = Some(body.clone());
        let srv = registry_with_layer(manifest.clone(), config.clone(), layer);
        let sb = Sandbox::new();
        pull(&sb, &format!("{}/hostile/img:1", srv.host()), &[]).says("the manifest declares 100");
        assert_cut_off(&body);
        assert_not_named(&sb);
        let tmp: u64 = std::fs::read_dir(sb.path().join("store/tmp"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(tmp, 0, "the refused blob was left in tmp/");
    }
}

#[test]
fn a_trickle_cannot_outlive_the_registry_timeout() {
    // Declared huge, sent a byte every 2 s: only received bytes may buy time.
    let (manifest, config) = declaring(1 << 62);
    let body = Endless {
        chunk: 1,
        every: std::time::Duration::from_secs(2),
        stop_after: 40,
        announce: None,
        sent: Default::default(),
    };
    let mut layer = Reply::new(200, "application/octet-stream", Vec::new());
    layer.endless = Some(body);
    let srv = registry_with_layer(manifest, config, layer);
    let sb = Sandbox::new();
    let t0 = std::time::Instant::now();
    pull(
        &sb,
        &format!("{}/hostile/img:1", srv.host()),
        &["--registry-timeout", "5"],
    )
    .says("timed out");
    // 5 s is what is allowed; 8 times that still fails an unbounded wait
    // (80 s here) on a loaded machine.
    assert!(
        t0.elapsed().as_secs() < 40,
        "gave up only after {:?}",
        t0.elapsed()
    );
    assert_not_named(&sb);
}

#[test]
fn an_index_with_10000_entries_makes_a_short_error() {
    let (manifest, _, _) = image();
    let entries: Vec<serde_json::Value> = (0..10_000)
        .map(|i| serde_json::json!({"mediaType":MANIFEST_TYPE,"digest":digest(&manifest),"size":manifest.len(),
            "platform":{"architecture":format!("arch{i}"),"os":"linux"}}))
        .collect();
    let index = serde_json::json!({"schemaVersion":2,
        "mediaType":"application/vnd.oci.image.index.v1+json","manifests":entries})
    .to_string();
    let srv = Hostile::start(move |_, path| {
        if path == "/v2/" {
            Reply::new(200, "application/json", "{}")
        } else {
            Reply::new(
                200,
                "application/vnd.oci.image.index.v1+json",
                index.clone(),
            )
        }
    });
    let sb = Sandbox::new();
    let out = pull(
        &sb,
        &format!("{}/hostile/img:1", srv.host()),
        &["--platform", "linux/amd64"],
    );
    out.says("10000 entries").says("linux/arch0");
    let err = out.stderr();
    assert!(err.len() < 2000, "a {} byte error:\n{err}", err.len());
}
