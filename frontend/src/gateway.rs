//! BuildKit's gateway protocol: the frontend container's stdin/stdout carry
//! one HTTP/2 connection on which BuildKit serves the `LLBBridge` gRPC service
//! and the frontend is the client. Options arrive as environment variables
//! (`BUILDKIT_FRONTEND_OPT_<n>=key=value`, `BUILDKIT_SESSION_ID`); the result
//! (or an error, which docker prints) goes back through `Return`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bunny::bunnyfile::Source;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use crate::error::FrontendError;
use crate::llb::Graph;
use crate::proto::fsutil::types::Stat;
use crate::proto::gateway::{self, llb_bridge_client::LlbBridgeClient};
use crate::proto::google::rpc::Status;
use crate::proto::pb;
use crate::translate::{self, SourceFiles, TranslateOptions, CONTEXT_NAME};

/// The client directory the build file is read from, and the option naming it.
pub const DOCKERFILE_NAME: &str = "dockerfile";
pub const FILENAME_OPT: &str = "filename";
/// The exporter metadata key for the image config (BuildKit's
/// `exptypes.ExporterImageConfigKey`).
pub const IMAGE_CONFIG_KEY: &str = "containerimage.config";

const OPT_PREFIX: &str = "BUILDKIT_FRONTEND_OPT_";
const CHUNK: i64 = 1 << 20;

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

    pub fn read_dir(&mut self, r: &SolvedRef, path: &str) -> Result<Vec<Stat>, FrontendError> {
        let req = gateway::ReadDirRequest {
            r#ref: r.id().to_string(),
            dir_path: path.to_string(),
            include_pattern: String::new(),
        };
        Ok(self
            .rt
            .block_on(self.client.read_dir(req))
            .map_err(status("ReadDir"))?
            .into_inner()
            .entries)
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

    /// Fails the build with `message`, which docker shows the user.
    pub fn return_error(&mut self, message: String) -> Result<(), FrontendError> {
        let req = gateway::ReturnRequest {
            result: None,
            // 3: INVALID_ARGUMENT, the build file is at fault.
            error: Some(Status { code: 3, message }),
        };
        self.rt
            .block_on(self.client.r#return(req))
            .map_err(status("Return"))?;
        Ok(())
    }
}

/// An error and its causes on one line, for `Return`.
pub fn chain(err: &dyn std::error::Error) -> String {
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

/// The frontend: read the build file, translate it, solve it, return it.
/// Errors about the build are returned to BuildKit (docker prints them);
/// only a broken connection is an `Err` here.
pub fn run() -> Result<(), FrontendError> {
    let mut gw = Gateway::connect()?;
    match build(&mut gw) {
        Ok((r, metadata)) => gw.return_result(r, metadata),
        Err(e) => {
            let msg = chain(&e);
            eprintln!("bunny-frontend: {msg}");
            gw.return_error(msg)
        }
    }
}

type Built = (SolvedRef, BTreeMap<String, Vec<u8>>);

fn build(gw: &mut Gateway) -> Result<Built, FrontendError> {
    let filename = gw
        .opts
        .get(FILENAME_OPT)
        .filter(|f| !f.is_empty())
        .cloned()
        .unwrap_or_else(|| "Dockerfile".to_string());
    let epoch = match gw.opts.get("build-arg:SOURCE_DATE_EPOCH") {
        Some(v) if !v.trim().is_empty() => {
            v.trim().parse().map_err(|_| FrontendError::BadPath {
                path: format!("SOURCE_DATE_EPOCH={v}"),
                why: "is not a number of seconds",
            })?
        }
        _ => 0,
    };
    let session = gw.session.clone();
    let mut g = Graph::new(None);
    let src = g.local(
        DOCKERFILE_NAME,
        session.as_deref(),
        std::slice::from_ref(&filename),
    );
    let def = g.definition(Some(&src));
    let r = gw.solve(def)?;
    let bytes = gw.read_file(&r, &filename, None)?;

    let opts = TranslateOptions { session, epoch };
    let t = {
        let mut files = GatewayFiles {
            gw: &mut *gw,
            refs: BTreeMap::new(),
            context_paths: Vec::new(),
        };
        translate::translate(&filename, &bytes, &mut files, &opts)?
    };
    for w in &t.warnings {
        eprintln!("{w}");
    }
    let r = gw.solve(t.definition)?;
    let mut metadata = BTreeMap::new();
    metadata.insert(IMAGE_CONFIG_KEY.to_string(), t.image_config);
    for (k, v) in t.annotations {
        metadata.insert(format!("annotation-manifest.{k}"), v.into_bytes());
    }
    Ok((r, metadata))
}

/// Reads the context and images through the gateway: each source is solved
/// once, then walked with StatFile/ReadDir and read in chunks with ReadFile.
struct GatewayFiles<'a> {
    gw: &'a mut Gateway,
    refs: BTreeMap<String, SolvedRef>,
    context_paths: Vec<String>,
}

// Go's os.FileMode bits, as fsutil's Stat carries them.
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;

impl GatewayFiles<'_> {
    fn source_ref(&mut self, source: &Source) -> Result<SolvedRef, FrontendError> {
        let key = match source {
            Source::Image(r) => format!("image:{r}"),
            _ => "context".to_string(),
        };
        if let Some(r) = self.refs.get(&key) {
            return Ok(r.clone());
        }
        let mut g = Graph::new(None);
        let out = match source {
            Source::Image(r) => g.image(r),
            _ => g.local(
                CONTEXT_NAME,
                self.gw.session.as_deref(),
                &self.context_paths,
            ),
        };
        let r = self.gw.solve(g.definition(Some(&out)))?;
        self.refs.insert(key, r.clone());
        Ok(r)
    }

    fn walk(
        &mut self,
        r: &SolvedRef,
        path: &str,
        st: &Stat,
        dest: &Path,
    ) -> Result<(), FrontendError> {
        let perm = st.mode & 0o777;
        let is_dir = st.mode & GO_MODE_DIR != 0 || st.mode & 0o170000 == 0o040000;
        let is_link = st.mode & GO_MODE_SYMLINK != 0 || st.mode & 0o170000 == 0o120000;
        let ctx = |what: &str| format!("{what} {}", dest.display());
        if is_link {
            std::os::unix::fs::symlink(&st.linkname, dest)
                .map_err(FrontendError::io(ctx("creating")))?;
        } else if is_dir {
            std::fs::create_dir_all(dest).map_err(FrontendError::io(ctx("creating")))?;
            for entry in self.gw.read_dir(r, path)? {
                let name = Path::new(&entry.path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if name.is_empty() || name == ".." {
                    continue;
                }
                let child = format!("{}/{name}", path.trim_end_matches('/'));
                self.walk(r, &child, &entry, &dest.join(&name))?;
            }
            set_mode(dest, perm)?;
        } else {
            use std::io::Write as _;
            let mut f = std::fs::File::create(dest).map_err(FrontendError::io(ctx("creating")))?;
            let mut offset = 0;
            loop {
                let data = self.gw.read_file(r, path, Some((offset, CHUNK)))?;
                f.write_all(&data)
                    .map_err(FrontendError::io(ctx("writing")))?;
                offset += data.len() as i64;
                if (data.len() as i64) < CHUNK || offset >= st.size {
                    break;
                }
            }
            set_mode(dest, perm)?;
        }
        Ok(())
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), FrontendError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(FrontendError::io(format!("chmod {}", path.display())))
}

impl SourceFiles for GatewayFiles<'_> {
    fn context_paths(&mut self, paths: &[String]) {
        self.context_paths = paths.to_vec();
    }

    fn fetch(&mut self, source: &Source, path: &Path, dest: &Path) -> Result<(), FrontendError> {
        let r = self.source_ref(source)?;
        let p = path.display().to_string();
        let st = self.gw.stat(&r, &p)?;
        self.walk(&r, &p, &st, dest)
    }
}
