//! BuildKit's gateway protocol: the frontend container's stdin/stdout carry
//! one HTTP/2 connection on which BuildKit serves the `LLBBridge` gRPC service
//! and the frontend is the client. Options arrive as environment variables
//! (`BUILDKIT_FRONTEND_OPT_<n>=key=value`, `BUILDKIT_SESSION_ID`); the result
//! (or an error, which docker prints) goes back through `Return`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use crate::error::FrontendError;
use crate::llb::Graph;
use crate::proto::fsutil::types::Stat;
use crate::proto::gateway::{self, llb_bridge_client::LlbBridgeClient};
use crate::proto::google::rpc::{Detail, Status};
use crate::proto::pb;
use crate::translate::{self, TranslateOptions, CONTEXT_NAME};

/// The client directory the build file is read from, and the option naming it.
pub const DOCKERFILE_NAME: &str = "dockerfile";
pub const FILENAME_OPT: &str = "filename";
/// The exporter metadata key for the image config (BuildKit's
/// `exptypes.ExporterImageConfigKey`).
pub const IMAGE_CONFIG_KEY: &str = "containerimage.config";

const OPT_PREFIX: &str = "BUILDKIT_FRONTEND_OPT_";

/// The exporter metadata key for the build's SOURCE_DATE_EPOCH (BuildKit's
/// `exptypes.ExporterEpochKey`, read since BuildKit 0.11): the exporter then
/// clamps the image's timestamps to it, as for the Dockerfile frontend.
pub const EPOCH_KEY: &str = "source.date.epoch";

/// The type URL BuildKit registers `errdefs.Source` under (JSON-encoded):
/// the build file, and the ranges in it an error is about. `buildctl` and
/// `docker build` print those lines under the error.
pub const SOURCE_TYPE_URL: &str = "github.com/moby/buildkit/errdefs.Source+json";

/// A solved result, in the wire form the server used for it.
#[derive(Debug, Clone)]
pub enum SolvedRef {
    /// BuildKit before the ref-array capability: a bare id.
    Id(String),
    /// An id with the definition that produced it.
    Ref(gateway::Ref),
}

impl SolvedRef {
    pub fn id(&self) -> &str {
        match self {
            SolvedRef::Id(id) => id,
            SolvedRef::Ref(r) => &r.id,
        }
    }
}

pub struct Gateway {
    rt: tokio::runtime::Runtime,
    client: LlbBridgeClient<Channel>,
    pub opts: BTreeMap<String, String>,
    pub session: Option<String>,
    array_refs: bool,
}

/// A duplicate of stdin (fd 0) or stdout (fd 1) as a non-blocking pipe end.
enum PipeEnd {
    Read(tokio::net::unix::pipe::Receiver),
    Write(tokio::net::unix::pipe::Sender),
}

fn pipe_end(fd: i32, read: bool) -> Result<PipeEnd, FrontendError> {
    use std::os::fd::AsFd as _;
    let what = if read { "stdin" } else { "stdout" };
    let owned = if fd == 0 {
        std::io::stdin().as_fd().try_clone_to_owned()
    } else {
        std::io::stdout().as_fd().try_clone_to_owned()
    }
    .map_err(FrontendError::io(format!("duplicating {what}")))?;
    let file = std::fs::File::from(owned);
    let ctx =
        format!("{what} is not a pipe (BuildKit runs frontends with their API on stdin/stdout)");
    Ok(if read {
        PipeEnd::Read(
            tokio::net::unix::pipe::Receiver::from_file(file).map_err(FrontendError::io(ctx))?,
        )
    } else {
        PipeEnd::Write(
            tokio::net::unix::pipe::Sender::from_file(file).map_err(FrontendError::io(ctx))?,
        )
    })
}

impl tokio::io::AsyncRead for PipeEnd {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PipeEnd::Read(r) => std::pin::Pin::new(r).poll_read(cx, buf),
            PipeEnd::Write(_) => {
                std::task::Poll::Ready(Err(std::io::Error::other("stdout is not read")))
            }
        }
    }
}

impl tokio::io::AsyncWrite for PipeEnd {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PipeEnd::Write(w) => std::pin::Pin::new(w).poll_write(cx, buf),
            PipeEnd::Read(_) => {
                std::task::Poll::Ready(Err(std::io::Error::other("stdin is not written")))
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PipeEnd::Write(w) => std::pin::Pin::new(w).poll_flush(cx),
            PipeEnd::Read(_) => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PipeEnd::Write(w) => std::pin::Pin::new(w).poll_shutdown(cx),
            PipeEnd::Read(_) => std::task::Poll::Ready(Ok(())),
        }
    }
}

/// `BUILDKIT_FRONTEND_OPT_*` values are `key=value`.
pub fn opts_from_env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with(OPT_PREFIX))
        .map(|(_, v)| match v.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (v, String::new()),
        })
        .collect()
}

fn status(call: &'static str) -> impl FnOnce(tonic::Status) -> FrontendError {
    move |s| FrontendError::Gateway {
        call,
        status: Box::new(s),
    }
}

impl Gateway {
    /// Connects over stdin/stdout and asks BuildKit what it supports.
    pub fn connect() -> Result<Gateway, FrontendError> {
        // A worker thread keeps the HTTP/2 connection served (pings, window
        // updates) while the frontend works synchronously between calls.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(FrontendError::io("starting the async runtime"))?;
        let channel = rt.block_on(async {
            // Non-blocking pipe ends on epoll: tokio's Stdin/Stdout go through
            // blocking threads, which stalled the HTTP/2 connection.
            let io = tokio::io::join(pipe_end(0, true)?, pipe_end(1, false)?);
            let slot = Arc::new(Mutex::new(Some(io)));
            // The URI is never dialled: the connector hands out stdio once.
            Endpoint::from_static("http://buildkit.invalid")
                .connect_with_connector(tower::service_fn(move |_| {
                    let slot = slot.clone();
                    async move {
                        let io = slot.lock().ok().and_then(|mut s| s.take());
                        io.map(TokioIo::new).ok_or_else(|| {
                            std::io::Error::other("stdin/stdout already carry the connection")
                        })
                    }
                }))
                .await
                .map_err(FrontendError::Connect)
        })?;
        let mut client = LlbBridgeClient::new(channel).max_decoding_message_size(64 << 20);
        let pong = rt
            .block_on(client.ping(gateway::PingRequest {}))
            .map_err(status("Ping"))?
            .into_inner();
        let array_refs = pong
            .frontend_api_caps
            .iter()
            .any(|c| c.id == "proto.refarray" && c.enabled);
        Ok(Gateway {
            rt,
            client,
            opts: opts_from_env(),
            session: std::env::var("BUILDKIT_SESSION_ID")
                .ok()
                .filter(|s| !s.is_empty()),
            array_refs,
        })
    }

    pub fn solve(&mut self, definition: pb::Definition) -> Result<SolvedRef, FrontendError> {
        let req = gateway::SolveRequest {
            definition: Some(definition),
            allow_result_return: true,
            allow_result_array_ref: self.array_refs,
            ..Default::default()
        };
        let resp = self
            .rt
            .block_on(self.client.solve(req))
            .map_err(status("Solve"))?
            .into_inner();
        use gateway::result::Result as R;
        match resp.result.and_then(|r| r.result) {
            Some(R::Ref(r)) => Ok(SolvedRef::Ref(r)),
            Some(R::RefDeprecated(id)) => Ok(SolvedRef::Id(id)),
            _ if !resp.r#ref.is_empty() => Ok(SolvedRef::Id(resp.r#ref)),
            _ => Err(FrontendError::Protocol {
                call: "Solve",
                missing: "a single result",
            }),
        }
    }

    pub fn read_file(
        &mut self,
        r: &SolvedRef,
        path: &str,
        range: Option<(i64, i64)>,
    ) -> Result<Vec<u8>, FrontendError> {
        let req = gateway::ReadFileRequest {
            r#ref: r.id().to_string(),
            file_path: path.to_string(),
            range: range.map(|(offset, length)| gateway::FileRange { offset, length }),
        };
        Ok(self
            .rt
            .block_on(self.client.read_file(req))
            .map_err(status("ReadFile"))?
            .into_inner()
            .data)
    }

    /// The image's digest and config, as BuildKit resolves them.
    pub fn resolve_image_config(
        &mut self,
        reference: &str,
    ) -> Result<(String, Vec<u8>), FrontendError> {
        let req = gateway::ResolveImageConfigRequest {
            r#ref: reference.to_string(),
            platform: None,
            resolve_mode: String::new(),
            log_name: format!("[bunny] resolve {reference}"),
        };
        let resp = self
            .rt
            .block_on(self.client.resolve_image_config(req))
            .map_err(status("ResolveImageConfig"))?
            .into_inner();
        Ok((resp.digest, resp.config))
    }

    pub fn stat(&mut self, r: &SolvedRef, path: &str) -> Result<Stat, FrontendError> {
        let req = gateway::StatFileRequest {
            r#ref: r.id().to_string(),
            path: path.to_string(),
        };
        self.rt
            .block_on(self.client.stat_file(req))
            .map_err(status("StatFile"))?
            .into_inner()
            .stat
            .ok_or(FrontendError::Protocol {
                call: "StatFile",
                missing: "a stat",
            })
    }

    /// Hands the result and its exporter metadata back; the build is done.
    pub fn return_result(
        &mut self,
        r: SolvedRef,
        metadata: BTreeMap<String, Vec<u8>>,
    ) -> Result<(), FrontendError> {
        use gateway::result::Result as R;
        let result = match r {
            SolvedRef::Id(id) => R::RefDeprecated(id),
            SolvedRef::Ref(r) => R::Ref(gateway::Ref {
                id: r.id,
                def: None,
            }),
        };
        let req = gateway::ReturnRequest {
            result: Some(gateway::Result {
                result: Some(result),
                metadata,
            }),
            error: None,
        };
        self.rt
            .block_on(self.client.r#return(req))
            .map_err(status("Return"))?;
        Ok(())
    }

    /// Fails the build with `error`, which docker and buildctl show the
    /// user: its code, its message, and the details of [`error_status`].
    pub fn return_error(&mut self, error: Status) -> Result<(), FrontendError> {
        let req = gateway::ReturnRequest {
            result: None,
            error: Some(error),
        };
        self.rt
            .block_on(self.client.r#return(req))
            .map_err(status("Return"))?;
        Ok(())
    }
}

pub use bunny::error_chain as chain;

/// The build file as read: its name and bytes.
pub type BuildFile = (String, Vec<u8>);

/// The status a failed build returns: the error's code and message; the
/// details of a failed BuildKit call it passes on (as a Go frontend's
/// gateway client does); and where in `file` the error is, as an
/// `errdefs.Source` (as the Dockerfile frontend attaches its parse errors).
pub fn error_status(e: &FrontendError, file: Option<&BuildFile>) -> Status {
    let mut details = Vec::new();
    if let Some(s) = e.status() {
        if let Ok(inner) = <Status as prost::Message>::decode(s.details()) {
            details.extend(inner.details);
        }
    }
    if let (Some(pos), Some((name, bytes))) = (e.position(), file) {
        details.push(source_detail(name, bytes, pos));
    }
    Status {
        code: e.code(),
        message: chain(e),
        details,
    }
}

/// `errdefs.Source` as BuildKit's grpcerrors encode it: Go's JSON of the
/// message (bytes as base64; lines 1-based, characters 0-based).
pub fn source_detail(name: &str, bytes: &[u8], pos: bunny::bunnyfile::Pos) -> Detail {
    use base64::Engine as _;
    let at = serde_json::json!({
        "line": pos.line,
        "character": pos.col.saturating_sub(1),
    });
    let source = serde_json::json!({
        "info": {
            "filename": name,
            "data": base64::engine::general_purpose::STANDARD.encode(bytes),
        },
        "ranges": [{"start": at, "end": at}],
    });
    Detail {
        type_url: SOURCE_TYPE_URL.to_string(),
        value: source.to_string().into_bytes(),
    }
}

/// The frontend: read the build file, translate it, solve it, return it.
/// Errors about the build are returned to BuildKit (docker prints them);
/// only a broken connection is an `Err` here.
pub fn run() -> Result<(), FrontendError> {
    let mut gw = Gateway::connect()?;
    let mut file = None;
    match build(&mut gw, &mut file) {
        Ok((r, metadata)) => gw.return_result(r, metadata),
        Err(e) => {
            let status = error_status(&e, file.as_ref());
            eprintln!("bunny-frontend: {}", status.message);
            gw.return_error(status)
        }
    }
}

type Built = (SolvedRef, BTreeMap<String, Vec<u8>>);

fn build(gw: &mut Gateway, file: &mut Option<BuildFile>) -> Result<Built, FrontendError> {
    let filename = gw
        .opts
        .get(FILENAME_OPT)
        .filter(|f| !f.is_empty())
        .cloned()
        .unwrap_or_else(|| "Dockerfile".to_string());
    let build_arg = |gw: &Gateway, name: &str| {
        gw.opts
            .get(&format!("build-arg:{name}"))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let epoch = match build_arg(gw, "SOURCE_DATE_EPOCH") {
        Some(v) => v.parse().map_err(|_| FrontendError::BadPath {
            path: format!("SOURCE_DATE_EPOCH={v}"),
            why: "is not a number of seconds",
        })?,
        None => 0,
    };
    let session = gw.session.clone();
    // The build file and the lock file beside it.
    let lock_name = match Path::new(&filename).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            format!("{}/{}", dir.display(), bunny::build::lock::LOCK_FILE)
        }
        _ => bunny::build::lock::LOCK_FILE.to_string(),
    };
    // The file comes in the `dockerfile` input (docker build, buildctl
    // --local dockerfile=); Go bunny reads it from `context`, so a
    // `buildctl --local context=.` alone works too.
    let read_from =
        |gw: &mut Gateway, input: &str| -> Result<(SolvedRef, Vec<u8>), FrontendError> {
            let mut g = Graph::new(None);
            let src = g.local(
                input,
                session.as_deref(),
                &[filename.clone(), lock_name.clone()],
            );
            let r = gw.solve(g.definition(Some(&src)))?;
            let bytes = gw.read_file(&r, &filename, None).map_err(|e| match e {
                FrontendError::Gateway { status, .. } => FrontendError::NoBuildFile {
                    file: filename.clone(),
                    status,
                },
                e => e,
            })?;
            Ok((r, bytes))
        };
    let (r, bytes) = match read_from(gw, DOCKERFILE_NAME) {
        Ok(found) => found,
        Err(first) => read_from(gw, CONTEXT_NAME).map_err(|_| first)?,
    };
    *file = Some((filename.clone(), bytes.clone()));
    let lock = match gw.read_file(&r, &lock_name, None) {
        Ok(b) => Some(
            bunny::build::lock::LockFile::parse(Path::new(&lock_name), &b).map_err(|e| {
                FrontendError::BadLock {
                    path: lock_name.clone(),
                    message: chain(&e),
                }
            })?,
        ),
        Err(_) => None,
    };

    // The frontend's own image runs the pack step: pin it to the digest
    // BuildKit resolves now, so every step of this build uses one binary.
    // BuildKit names it in `source`; a gateway started some other way can be
    // told with the build-arg or the image's own Env.
    let source = gw
        .opts
        .get("source")
        .cloned()
        .filter(|s| !s.is_empty())
        .or_else(|| build_arg(gw, "BUNNY_FRONTEND_IMAGE"))
        .or_else(|| {
            std::env::var("BUNNY_FRONTEND_IMAGE")
                .ok()
                .filter(|v| !v.trim().is_empty())
        });
    let frontend_image = source.map(|source| {
        let full = crate::llb::normalize_reference(&source);
        match gw.resolve_image_config(&full) {
            Ok((digest, _)) if !digest.is_empty() && !full.contains('@') => {
                format!("{full}@{digest}")
            }
            _ => full,
        }
    });
    let tools_image = build_arg(gw, translate::TOOLS_ARG).or_else(|| {
        std::env::var(translate::TOOLS_ARG)
            .ok()
            .filter(|v| !v.trim().is_empty())
    });
    let mut layer_overrides = BTreeMap::new();
    if let Some(specs) = build_arg(gw, translate::TOOLCHAIN_ARG) {
        for spec in specs.split([' ', ',', '\n']).filter(|s| !s.is_empty()) {
            let (k, v) = bunny::build::app::parse_layer_override(spec).ok_or_else(|| {
                FrontendError::BadPath {
                    path: format!("{}={spec}", translate::TOOLCHAIN_ARG),
                    why: "write FRAMEWORK=REF or FRAMEWORK.LAYER=REF",
                }
            })?;
            layer_overrides.insert(k, v);
        }
    }

    let opts = TranslateOptions {
        session,
        epoch,
        frontend_image,
        tools_image,
        layer_overrides,
        lock,
        report_errors: true,
    };
    let t = {
        let mut resolver = GatewayResolver {
            gw: &mut *gw,
            context: None,
            failed: BTreeMap::new(),
        };
        let t = translate::translate(&filename, &bytes, &mut resolver, &opts)?;
        check_images(&filename, &t, &resolver.failed)?;
        t
    };
    for w in &t.warnings {
        eprintln!("{w}");
    }
    check_context(gw, &filename, &t)?;
    let r = gw.solve(t.definition)?;
    let meta = gw.solve(t.meta)?;
    if let Ok(report) = gw.read_file(&meta, crate::pack::META_ERROR, None) {
        let failure: crate::pack::PackFailure =
            serde_json::from_slice(&report).map_err(|e| FrontendError::Io {
                context: "reading the pack step's error".into(),
                source: std::io::Error::other(e),
            })?;
        return Err(FrontendError::PackFailed {
            file: filename.clone(),
            failure,
        });
    }
    let config = gw.read_file(&meta, crate::pack::META_CONFIG, None)?;
    let annotations = gw.read_file(&meta, crate::pack::META_ANNOTATIONS, None)?;
    let bad = |what: &str, e: serde_json::Error| FrontendError::Io {
        context: format!("reading the pack step's {what}"),
        source: std::io::Error::other(e),
    };
    let mut config: serde_json::Value =
        serde_json::from_slice(&config).map_err(|e| bad("config", e))?;
    // BuildKit fills in the layers it exports: one, the pack step's
    // output. Its history entry is written here, dated as the config (the
    // epoch): left out, BuildKit dates it by the clock, and the image's
    // digest would change from one clean build to the next.
    if let Some(obj) = config.as_object_mut() {
        let created = obj
            .get("created")
            .cloned()
            .unwrap_or_else(|| serde_json::json!(epoch_rfc3339(epoch)));
        obj.insert(
            "history".into(),
            serde_json::json!([{
                "created": created,
                "created_by": format!("bunny build -f {filename}"),
                "comment": "bunny",
            }]),
        );
        obj.insert(
            "rootfs".into(),
            serde_json::json!({"type": "layers", "diff_ids": []}),
        );
    }
    let annotations: BTreeMap<String, String> =
        serde_json::from_slice(&annotations).map_err(|e| bad("annotations", e))?;
    let mut metadata = BTreeMap::new();
    metadata.insert(
        IMAGE_CONFIG_KEY.to_string(),
        serde_json::to_vec(&config).map_err(|e| bad("config", e))?,
    );
    for (k, v) in annotations {
        metadata.insert(format!("annotation-manifest.{k}"), v.into_bytes());
    }
    metadata.insert(EPOCH_KEY.to_string(), epoch.to_string().into_bytes());
    Ok((r, metadata))
}

/// `epoch` seconds as an RFC 3339 UTC time.
fn epoch_rfc3339(epoch: u64) -> String {
    let secs = i64::try_from(epoch).unwrap_or(i64::MAX);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Fails with the file's line when a context path it names is missing:
/// the pack step would fail too, but BuildKit would report only that a
/// process exited 1. The check reads the context source the pack step
/// mounts, so BuildKit sends the files once.
fn check_context(
    gw: &mut Gateway,
    filename: &str,
    t: &translate::Translation,
) -> Result<(), FrontendError> {
    let Some(def) = &t.context else {
        return Ok(());
    };
    if t.checks.is_empty() {
        return Ok(());
    }
    let ctx = gw.solve(def.clone())?;
    for c in &t.checks {
        let rel = c.path.trim_start_matches('/').trim_end_matches('/');
        let path = if rel.is_empty() { "." } else { rel };
        if let Err(FrontendError::Gateway { .. }) = gw.stat(&ctx, path) {
            return Err(FrontendError::Missing {
                file: filename.to_string(),
                pos: c.pos,
                what: c.what,
                path: c.path.clone(),
            });
        }
    }
    Ok(())
}

/// Fails at the file's line when an image it names cannot be resolved
/// because it does not exist (other failures, such as a refused login, are
/// left to BuildKit's own error when the image is pulled).
fn check_images(
    filename: &str,
    t: &translate::Translation,
    failed: &BTreeMap<String, String>,
) -> Result<(), FrontendError> {
    for c in &t.image_checks {
        let Some(message) = failed.get(&c.path) else {
            continue;
        };
        return Err(FrontendError::MissingImage {
            file: filename.to_string(),
            pos: c.pos,
            reference: c.path.clone(),
            message: message.clone(),
        });
    }
    Ok(())
}

/// Answers the translator's questions through the gateway.
struct GatewayResolver<'a> {
    gw: &'a mut Gateway,
    /// The whole context, solved on the first question about it.
    context: Option<SolvedRef>,
    /// References BuildKit found no such image for, with its message.
    failed: BTreeMap<String, String>,
}

impl translate::Resolver for GatewayResolver<'_> {
    fn image_config(&mut self, reference: &str) -> Option<serde_json::Value> {
        let full = crate::llb::normalize_reference(reference);
        let (_, config) = match self.gw.resolve_image_config(&full) {
            Ok(resolved) => resolved,
            Err(FrontendError::Gateway { status, .. }) => {
                // BuildKit passes the registry's "not found" on with code
                // Unknown (or NotFound): only its words tell it apart.
                if status.code() == tonic::Code::NotFound
                    || status.message().trim_end().ends_with("not found")
                {
                    self.failed
                        .insert(reference.to_string(), status.message().to_string());
                }
                return None;
            }
            Err(_) => return None,
        };
        let value: serde_json::Value = serde_json::from_slice(&config).ok()?;
        value.get("config").cloned()
    }

    fn is_context_dir(&mut self, path: &str) -> bool {
        if self.context.is_none() {
            let mut g = Graph::new(None);
            let out = g.local(
                CONTEXT_NAME,
                self.gw.session.as_deref(),
                &[path.to_string()],
            );
            self.context = self.gw.solve(g.definition(Some(&out))).ok();
        }
        match &self.context {
            Some(r) => {
                let r = r.clone();
                self.gw
                    .stat(&r, path)
                    .map(|st| st.mode & GO_MODE_DIR != 0 || st.mode & 0o170000 == 0o040000)
                    .unwrap_or(false)
            }
            None => false,
        }
    }
}

// Go's os.FileMode directory bit, as fsutil's Stat carries it.
const GO_MODE_DIR: u32 = 1 << 31;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_format_as_rfc3339() {
        assert_eq!(epoch_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(epoch_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(epoch_rfc3339(951_825_600), "2000-02-29T12:00:00Z");
    }

    #[test]
    fn a_bunnyfile_error_carries_its_code_and_line() {
        let e = FrontendError::from(
            bunny::bunnyfile::parse(
                "BunnyFile",
                "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemuu\nkernel:\n  from: local\n  path: k\nrootfs:\n  from: scratch\n",
            )
            .unwrap_err(),
        );
        let st = error_status(&e, Some(&("BunnyFile".into(), b"x\ny\n".to_vec())));
        assert_eq!(st.code, crate::error::code::INVALID_ARGUMENT);
        assert!(st.message.starts_with("BunnyFile:4:12:"), "{}", st.message);
        assert_eq!(st.details.len(), 1);
        assert_eq!(st.details[0].type_url, SOURCE_TYPE_URL);
        let v: serde_json::Value = serde_json::from_slice(&st.details[0].value).unwrap();
        assert_eq!(v["info"]["filename"], "BunnyFile");
        assert_eq!(v["info"]["data"], "eAp5Cg==");
        assert_eq!(v["ranges"][0]["start"]["line"], 4);
        assert_eq!(v["ranges"][0]["start"]["character"], 11);
        assert_eq!(v["ranges"][0]["end"]["line"], 4);
    }

    #[test]
    fn a_failed_solve_keeps_buildkits_code_and_details() {
        let inner = Status {
            code: 2,
            message: "exit code: 1".into(),
            details: vec![Detail {
                type_url: "github.com/moby/buildkit/errdefs.Vertex+json".into(),
                value: b"{}".to_vec(),
            }],
        };
        let status = tonic::Status::with_details(
            tonic::Code::Unknown,
            "exit code: 1",
            prost::Message::encode_to_vec(&inner).into(),
        );
        let e = FrontendError::Gateway {
            call: "Solve",
            status: Box::new(status),
        };
        let st = error_status(&e, None);
        assert_eq!(st.code, crate::error::code::UNKNOWN);
        assert_eq!(st.message, "exit code: 1");
        assert_eq!(st.details, inner.details);
    }
}
