//! A small LLB graph builder: source ops (local context, images, git), exec
//! ops (a command in an image, with mounts) and mkfile ops, serialised into the `pb.Definition` BuildKit solves
//! and `buildctl build` reads on stdin.
//!
//! Ops are content-addressed: an op's digest is the sha256 of its protobuf
//! encoding, and the generated code uses BTreeMaps, so the same graph always
//! encodes to the same bytes.

use std::collections::BTreeMap;

use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::proto::pb;

/// One output of an op, usable as an input of later ops.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Output {
    digest: String,
    index: i64,
}

impl Output {
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// What an exec op mounts at `dest`.
#[derive(Debug, Clone)]
pub enum MountSource {
    /// An earlier op's output, `selector` (a path inside it, or "") bound
    /// read-only.
    ReadOnly { from: Output, selector: String },
    /// An empty directory whose contents become an output of the op.
    Output,
    /// A tmpfs, thrown away.
    Tmpfs,
}

/// A command in a container: `root` is the image it runs in.
#[derive(Debug, Clone)]
pub struct Exec {
    pub root: Output,
    /// A writable rootfs (its changes are thrown away); BuildKit mounts a
    /// rootfs that is no output read-only.
    pub writable_root: bool,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub mounts: Vec<(String, MountSource)>,
    /// False: only loopback (BuildKit's `NetMode_NONE`).
    pub network: bool,
}

/// An op's inputs, each once, in the order first used.
#[derive(Default)]
struct Inputs(Vec<Output>);

impl Inputs {
    /// The index of `o` among the inputs, adding it if new.
    fn index(&mut self, o: &Output) -> i64 {
        match self.0.iter().position(|i| i == o) {
            Some(p) => p as i64,
            None => {
                self.0.push(o.clone());
                self.0.len() as i64 - 1
            }
        }
    }

    fn to_pb(&self) -> Vec<pb::Input> {
        self.0
            .iter()
            .map(|o| pb::Input {
                digest: o.digest.clone(),
                index: o.index,
            })
            .collect()
    }
}

/// The graph under construction.
#[derive(Debug, Default)]
pub struct Graph {
    ops: Vec<Vec<u8>>,
    digests: Vec<String>,
    metadata: BTreeMap<String, pb::OpMetadata>,
    platform: Option<pb::Platform>,
    /// Timestamp (ns since the epoch) of files the graph writes; None keeps
    /// BuildKit's default (now, or the source's time for copies).
    timestamp: Option<i64>,
}

impl Graph {
    /// `epoch` (SOURCE_DATE_EPOCH, seconds) stamps every file the file ops
    /// write, so the same inputs give the same files.
    pub fn new(epoch: Option<u64>) -> Graph {
        Graph {
            timestamp: epoch
                .map(|e| i64::try_from(e).unwrap_or(i64::MAX / 1_000_000_000) * 1_000_000_000),
            ..Graph::default()
        }
    }

    /// The platform image sources are resolved for (`docker-image://` ops).
    pub fn set_platform(&mut self, os: &str, architecture: &str) {
        self.platform = Some(pb::Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: String::new(),
        });
    }

    fn add(&mut self, op: pb::Op, name: &str) -> Output {
        let bytes = op.encode_to_vec();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if !self.digests.contains(&digest) {
            self.ops.push(bytes);
            self.digests.push(digest.clone());
            let mut description = BTreeMap::new();
            description.insert("llb.customname".to_string(), name.to_string());
            self.metadata.insert(
                digest.clone(),
                pb::OpMetadata {
                    description,
                    ..Default::default()
                },
            );
        }
        Output { digest, index: 0 }
    }

    /// A directory the client sends with the build (`context`, `dockerfile`).
    /// `session` ties it to the build's session (a frontend knows it; a
    /// definition for `buildctl` leaves it to the client). `follow_paths`
    /// limits the transfer to those paths when not empty.
    pub fn local(&mut self, name: &str, session: Option<&str>, follow_paths: &[String]) -> Output {
        let mut attrs = BTreeMap::new();
        if let Some(s) = session.filter(|s| !s.is_empty()) {
            attrs.insert("local.session".to_string(), s.to_string());
        }
        attrs.insert("local.sharedkeyhint".to_string(), name.to_string());
        if !follow_paths.is_empty() {
            let mut paths = follow_paths.to_vec();
            paths.sort();
            paths.dedup();
            // A list of strings always serialises.
            let json = serde_json::to_string(&paths).unwrap_or_else(|_| "[]".into());
            attrs.insert("local.followpaths".to_string(), json);
        }
        self.add(
            pb::Op {
                op: Some(pb::op::Op::Source(pb::SourceOp {
                    identifier: format!("local://{name}"),
                    attrs,
                })),
                ..Default::default()
            },
            &format!("[bunny] local {name}"),
        )
    }

    /// A git repository's checkout at `reference` (a branch or tag; the
    /// default branch when None), fetched by BuildKit. The identifier is
    /// the URL without its scheme, as BuildKit's own client writes it; the
    /// full URL goes in `git.fullurl` so http(s), ssh and file remotes are
    /// fetched as written.
    pub fn git(&mut self, url: &str, reference: Option<&str>) -> Output {
        let bare = url
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(url)
            .trim_start_matches("git@")
            .replacen(':', "/", usize::from(url.starts_with("git@")));
        let mut identifier = format!("git://{bare}");
        if let Some(r) = reference.filter(|r| !r.is_empty()) {
            identifier.push('#');
            identifier.push_str(r);
        }
        let mut attrs = BTreeMap::new();
        attrs.insert("git.fullurl".to_string(), url.to_string());
        self.add(
            pb::Op {
                op: Some(pb::op::Op::Source(pb::SourceOp { identifier, attrs })),
                ..Default::default()
            },
            &format!("[bunny] git {url}"),
        )
    }

    /// An image's filesystem; `reference` is normalised as docker does
    /// (`alpine` -> `docker.io/library/alpine:latest`).
    pub fn image(&mut self, reference: &str) -> Output {
        let full = normalize_reference(reference);
        let platform = self.platform.clone();
        self.add(
            pb::Op {
                op: Some(pb::op::Op::Source(pb::SourceOp {
                    identifier: format!("docker-image://{full}"),
                    attrs: BTreeMap::new(),
                })),
                platform,
                ..Default::default()
            },
            &format!("[bunny] image {full}"),
        )
    }

    /// An exec op; returns one output per [`MountSource::Output`] mount, in
    /// the order they were given.
    pub fn exec(&mut self, exec: &Exec, name: &str) -> Vec<Output> {
        let mut inputs = Inputs::default();
        let root = inputs.index(&exec.root);
        // A writable rootfs must be an output (BuildKit's output 0); it is
        // not returned, so the outputs are exactly the `Output` mounts.
        let first_output = i64::from(exec.writable_root);
        let mut mounts = vec![pb::Mount {
            input: root,
            dest: "/".into(),
            output: if exec.writable_root { 0 } else { -1 },
            readonly: !exec.writable_root,
            ..Default::default()
        }];
        let mut outputs = first_output;
        for (dest, source) in &exec.mounts {
            mounts.push(match source {
                MountSource::ReadOnly { from, selector } => pb::Mount {
                    input: inputs.index(from),
                    selector: selector.clone(),
                    dest: dest.clone(),
                    output: -1,
                    readonly: true,
                    ..Default::default()
                },
                MountSource::Output => {
                    outputs += 1;
                    pb::Mount {
                        input: -1,
                        dest: dest.clone(),
                        output: outputs - 1,
                        ..Default::default()
                    }
                }
                MountSource::Tmpfs => pb::Mount {
                    input: -1,
                    dest: dest.clone(),
                    output: -1,
                    mount_type: pb::MountType::Tmpfs as i32,
                    ..Default::default()
                },
            });
        }
        let op = pb::Op {
            inputs: inputs.to_pb(),
            op: Some(pb::op::Op::Exec(pb::ExecOp {
                meta: Some(pb::Meta {
                    args: exec.args.clone(),
                    env: exec.env.clone(),
                    cwd: exec.cwd.clone(),
                    user: String::new(),
                    hostname: String::new(),
                }),
                mounts,
                network: if exec.network {
                    pb::NetMode::Unset as i32
                } else {
                    pb::NetMode::None as i32
                },
                security: pb::SecurityMode::Sandbox as i32,
            })),
            platform: self.platform.clone(),
        };
        let first = self.add(op, name);
        (first_output..outputs)
            .map(|index| Output {
                digest: first.digest.clone(),
                index,
            })
            .collect()
    }

    /// A file op writing one file (with its parents) on an empty
    /// filesystem: small inputs made by the frontend itself.
    pub fn mkfile(&mut self, path: &str, data: Vec<u8>, mode: u32, name: &str) -> Output {
        let action = pb::FileAction {
            input: -1,
            secondary_input: -1,
            output: 0,
            action: Some(pb::file_action::Action::Mkfile(pb::FileActionMkFile {
                path: path.to_string(),
                mode: mode as i32,
                data,
                owner: None,
                timestamp: self.timestamp.unwrap_or(-1),
            })),
        };
        let op = pb::Op {
            op: Some(pb::op::Op::File(pb::FileOp {
                actions: vec![action],
            })),
            ..Default::default()
        };
        self.add(op, name)
    }

    /// The definition whose result is `result` (None: an empty filesystem).
    /// The graph stays usable: one graph can give several definitions that
    /// share ops (BuildKit solves the shared ops once).
    pub fn definition(&self, result: Option<&Output>) -> pb::Definition {
        // The last op names the result and has no body, as BuildKit expects.
        let terminal = pb::Op {
            inputs: result
                .map(|r| {
                    vec![pb::Input {
                        digest: r.digest.clone(),
                        index: r.index,
                    }]
                })
                .unwrap_or_default(),
            ..Default::default()
        };
        let mut def = self.ops.clone();
        def.push(terminal.encode_to_vec());
        pb::Definition {
            def,
            metadata: self.metadata.clone(),
        }
    }
}

/// `name[:tag]` -> `registry/name:tag` with docker's defaults (docker.io,
/// library/, latest); digests are kept.
pub fn normalize_reference(reference: &str) -> String {
    let (name, suffix) = match reference.split_once('@') {
        Some((n, d)) => (n, format!("@{d}")),
        None => {
            let last = reference.rsplit('/').next().unwrap_or(reference);
            if last.contains(':') {
                let cut = reference.len() - last.len() + last.find(':').unwrap_or(last.len());
                (&reference[..cut], reference[cut..].to_string())
            } else {
                (reference, ":latest".to_string())
            }
        }
    };
    let first = name.split('/').next().unwrap_or(name);
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_registry {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    format!("{full}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_like_docker() {
        assert_eq!(
            normalize_reference("alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(normalize_reference("user/app:1"), "docker.io/user/app:1");
        assert_eq!(
            normalize_reference("127.0.0.1:5000/k/kernel"),
            "127.0.0.1:5000/k/kernel:latest"
        );
        assert_eq!(
            normalize_reference("harbor.nbfc.io/a/b:t@sha256:00"),
            "harbor.nbfc.io/a/b:t@sha256:00"
        );
    }

    #[test]
    fn same_graph_same_bytes_and_exec_outputs_skip_the_rootfs() {
        let build = || {
            let mut g = Graph::new(Some(0));
            let image = g.image("alpine");
            let ctx = g.local("context", None, &["k".into()]);
            let spec = g.mkfile("/spec.json", b"{}".to_vec(), 0o644, "spec");
            let outs = g.exec(
                &Exec {
                    root: image,
                    writable_root: true,
                    args: vec!["/bin/true".into()],
                    env: vec![],
                    cwd: "/".into(),
                    mounts: vec![
                        (
                            "/src".into(),
                            MountSource::ReadOnly {
                                from: ctx,
                                selector: "/k".into(),
                            },
                        ),
                        (
                            "/spec".into(),
                            MountSource::ReadOnly {
                                from: spec,
                                selector: String::new(),
                            },
                        ),
                        ("/out".into(), MountSource::Output),
                        ("/tmp".into(), MountSource::Tmpfs),
                        ("/meta".into(), MountSource::Output),
                    ],
                    network: false,
                },
                "run",
            );
            (g.definition(outs.first()), outs)
        };
        let (a, outs) = build();
        assert_eq!(a.encode_to_vec(), build().0.encode_to_vec());
        // The writable rootfs is BuildKit's output 0; ours are 1 and 2.
        assert_eq!(outs.iter().map(|o| o.index).collect::<Vec<_>>(), [1, 2]);
        let exec = pb::Op::decode(a.def[3].as_slice()).unwrap();
        let Some(pb::op::Op::Exec(e)) = &exec.op else {
            panic!("not an exec op")
        };
        assert_eq!(exec.inputs.len(), 3, "image, context, spec");
        assert_eq!(e.network, pb::NetMode::None as i32);
        let m: Vec<(i64, &str, i64, bool)> = e
            .mounts
            .iter()
            .map(|m| (m.input, m.dest.as_str(), m.output, m.readonly))
            .collect();
        assert_eq!(
            m,
            [
                (0, "/", 0, false),
                (1, "/src", -1, true),
                (2, "/spec", -1, true),
                (-1, "/out", 1, false),
                (-1, "/tmp", -1, false),
                (-1, "/meta", 2, false),
            ]
        );
        assert_eq!(e.mounts[1].selector, "/k");
        assert_eq!(e.mounts[4].mount_type, pb::MountType::Tmpfs as i32);
        let term = pb::Op::decode(a.def[4].as_slice()).unwrap();
        assert!(term.op.is_none());
        assert_eq!(term.inputs[0].index, 1);
        assert_eq!(
            term.inputs[0].digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&a.def[3])))
        );
    }
}
