//! A small LLB graph builder: source ops (local context, images), exec ops
//! (a command in an image, with mounts) and file ops (copy, mkfile, mkdir),
//! serialised into the `pb.Definition` BuildKit solves
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

/// One step of a file op. Each step works on the result of the previous one
/// (the first on the op's base, or on an empty filesystem).
#[derive(Debug, Clone)]
pub enum FileStep {
    /// Copies `src` from `from` to `dest`, creating missing parents of `dest`.
    /// A directory's contents are copied into `dest`, as `COPY dir/ dest/`.
    Copy {
        from: Output,
        src: String,
        dest: String,
        /// None keeps the source's permission bits.
        mode: Option<u32>,
    },
    MkFile {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    MkDir {
        path: String,
        mode: u32,
    },
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

    fn len(&self) -> i64 {
        self.0.len() as i64
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

    /// A file op: `steps` applied in order on `base` (None: an empty
    /// filesystem). Returns the filesystem after the last step.
    pub fn file(
        &mut self,
        base: Option<&Output>,
        steps: &[FileStep],
        name: &str,
    ) -> Option<Output> {
        if steps.is_empty() {
            return base.cloned();
        }
        let mut inputs = Inputs::default();
        let base_index = base.map(|b| inputs.index(b));
        let secondary: Vec<Option<i64>> = steps
            .iter()
            .map(|s| match s {
                FileStep::Copy { from, .. } => Some(inputs.index(from)),
                _ => None,
            })
            .collect();
        let n_inputs = inputs.len();
        let ts = self.timestamp.unwrap_or(-1);
        let actions = steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                // Step i > 0 works on step i-1's result, which BuildKit numbers
                // after the real inputs.
                let input = if i == 0 {
                    base_index.unwrap_or(-1)
                } else {
                    n_inputs + i as i64 - 1
                };
                let action = match step {
                    FileStep::Copy {
                        src, dest, mode, ..
                    } => pb::file_action::Action::Copy(pb::FileActionCopy {
                        src: src.clone(),
                        dest: dest.clone(),
                        mode: mode.map(|m| m as i32).unwrap_or(-1),
                        follow_symlink: true,
                        dir_copy_contents: true,
                        create_dest_path: true,
                        timestamp: ts,
                        ..Default::default()
                    }),
                    FileStep::MkFile { path, data, mode } => {
                        pb::file_action::Action::Mkfile(pb::FileActionMkFile {
                            path: path.clone(),
                            mode: *mode as i32,
                            data: data.clone(),
                            owner: None,
                            timestamp: ts,
                        })
                    }
                    FileStep::MkDir { path, mode } => {
                        pb::file_action::Action::Mkdir(pb::FileActionMkDir {
                            path: path.clone(),
                            mode: *mode as i32,
                            make_parents: true,
                            owner: None,
                            timestamp: ts,
                        })
                    }
                };
                pb::FileAction {
                    input,
                    secondary_input: secondary[i].unwrap_or(-1),
                    output: if i + 1 == steps.len() { 0 } else { -1 },
                    action: Some(action),
                }
            })
            .collect();
        let op = pb::Op {
            inputs: inputs.to_pb(),
            op: Some(pb::op::Op::File(pb::FileOp { actions })),
            ..Default::default()
        };
        Some(self.add(op, name))
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
    fn same_graph_same_bytes_and_chained_steps() {
        let build = || {
            let mut g = Graph::new(Some(0));
            let ctx = g.local("context", None, &["k".into()]);
            let out = g.file(
                None,
                &[
                    FileStep::Copy {
                        from: ctx.clone(),
                        src: "/k".into(),
                        dest: "/.boot/kernel".into(),
                        mode: None,
                    },
                    FileStep::MkFile {
                        path: "/urunc.json".into(),
                        data: b"{}".to_vec(),
                        mode: 0o644,
                    },
                ],
                "pack",
            );
            g.definition(out.as_ref())
        };
        let a = build();
        assert_eq!(a.encode_to_vec(), build().encode_to_vec());
        assert_eq!(a.def.len(), 3);
        let file = pb::Op::decode(a.def[1].as_slice()).unwrap();
        let Some(pb::op::Op::File(f)) = file.op else {
            panic!("not a file op")
        };
        assert_eq!(file.inputs.len(), 1);
        assert_eq!(
            (
                f.actions[0].input,
                f.actions[0].secondary_input,
                f.actions[0].output
            ),
            (-1, 0, -1)
        );
        assert_eq!((f.actions[1].input, f.actions[1].output), (1, 0));
        let term = pb::Op::decode(a.def[2].as_slice()).unwrap();
        assert!(term.op.is_none());
        assert_eq!(
            term.inputs[0].digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&a.def[1])))
        );
    }
}
