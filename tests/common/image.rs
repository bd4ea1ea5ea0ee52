//! A small urunc image built with bunny's own OCI code: a "kernel" of random
//! bytes, a text "initrd" and `/urunc.json`, one layer each.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use bunny::layers::store::Store;
use bunny::oci::annotations::{UruncConfig, KERNEL_PATH, ROOTFS_PATH};
use bunny::oci::image::{assemble, ImageConfig, ImageSpec};
use bunny::oci::layer::{
    write_layer, CompressionChoice, Layer, LayerContent, LayerEntry, LayerOptions,
};
use bunny::platform::Arch;
use oci_spec::image::Descriptor;

pub const EPOCH: u64 = 1_700_000_000;

pub struct Sample {
    pub manifest: Descriptor,
    pub layers: Vec<Layer>,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub urunc: UruncConfig,
    pub labels: BTreeMap<String, String>,
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf
}

pub fn text_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0u64;
    while out.len() < n {
        out.extend_from_slice(
            format!("line {i}: the quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
        i += 1;
    }
    out.truncate(n);
    out
}

pub fn sample_urunc() -> UruncConfig {
    UruncConfig {
        unikernel_type: "linux".into(),
        hypervisor: "qemu".into(),
        binary: KERNEL_PATH.into(),
        cmdline: Some("/bin/httpd -f -p 80".into()),
        initrd: Some(ROOTFS_PATH.into()),
        block: None,
        blk_mnt_point: None,
        mount_rootfs: false,
        unikernel_version: None,
        use_dm_block: None,
    }
}

/// Writes the kernel and initrd files into `src` (only if missing, so a
/// caller can prepare them with other mtimes) and builds the image.
pub fn build_sample(store: &Store, src: &Path, kernel_bytes: &[u8]) -> Sample {
    fs::create_dir_all(src).unwrap();
    let kernel = src.join("kernel");
    let initrd = src.join("initrd");
    if !kernel.exists() {
        fs::write(&kernel, kernel_bytes).unwrap();
    }
    if !initrd.exists() {
        fs::write(&initrd, text_bytes(96 * 1024)).unwrap();
    }
    let urunc = sample_urunc();
    let opts = LayerOptions {
        mtime: EPOCH,
        compression: CompressionChoice::Auto,
    };
    let entry = |path: &str, file: &Path, mode| LayerEntry {
        path: path.into(),
        content: LayerContent::File(file.to_path_buf()),
        mode,
    };
    let layers = vec![
        write_layer(&[entry(KERNEL_PATH, &kernel, 0o755)], &opts, store).unwrap(),
        write_layer(&[entry(ROOTFS_PATH, &initrd, 0o644)], &opts, store).unwrap(),
        write_layer(&[urunc.layer_entry()], &opts, store).unwrap(),
    ];
    let mut labels = urunc.to_annotations();
    labels.insert("org.example.purpose".into(), "bunny test".into());
    let spec = ImageSpec {
        layers: layers.clone(),
        config: ImageConfig {
            os: "linux".into(),
            architecture: Arch::Amd64,
            cmd: vec!["/bin/httpd".into(), "-f".into()],
            entrypoint: vec![],
            env: vec!["PATH=/bin:/usr/bin".into()],
            labels: labels.clone(),
            working_dir: None,
            user: None,
            created_epoch: EPOCH,
        },
        annotations: urunc.to_annotations(),
    };
    let manifest = assemble(&spec, store).unwrap();
    Sample {
        manifest,
        layers,
        kernel,
        initrd,
        urunc,
        labels,
    }
}
