//! bench/ufs2.sh's driver: writes DIR as a UFS2 image with bunny's writer,
//! exactly as a build writes a FreeBSD root (`build_block`); and
//! bench/volume-image.sh's: a `bunny run -v DIR:PATH` volume image, made as
//! `bunny run` makes it (`volumes::make_image`, ext4 or UFS2).
//! Usage: ufs2_write DIR IMAGE | ufs2_write --volume ext4|ufs2 DIR IMAGE

use std::path::Path;
use std::process::ExitCode;

use bunny::layers::block::{build_block, BlockOptions};
use bunny::layers::tree::Tree;
use bunny::platform::BlockFs;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, fs, dir, image] = args.as_slice() {
        if flag == "--volume" {
            return volume(fs, dir, image);
        }
    }
    let [dir, image] = args.as_slice() else {
        eprintln!("usage: ufs2_write DIR IMAGE | ufs2_write --volume ext4|ufs2 DIR IMAGE");
        return ExitCode::from(2);
    };
    let mut tree = Tree::new();
    let result = tree
        .add_from_context(Path::new(dir), ".", "/")
        .and_then(|()| {
            build_block(
                &tree,
                BlockFs::Ufs2,
                Path::new(image),
                &BlockOptions::default(),
            )
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ufs2_write: {e}");
            ExitCode::FAILURE
        }
    }
}

fn volume(fs: &str, dir: &str, image: &str) -> ExitCode {
    use bunny::volumes::{make_image, VolumeFs};
    let fs = match fs {
        "ext4" => VolumeFs::Ext4,
        "ufs2" => VolumeFs::Ufs2,
        other => {
            eprintln!("ufs2_write: --volume {other}: ext4 or ufs2");
            return ExitCode::from(2);
        }
    };
    match make_image(Path::new(dir), Path::new(image), fs, None, "bunnyvol0") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ufs2_write: {e}");
            ExitCode::FAILURE
        }
    }
}
