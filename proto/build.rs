//! Compiles every `.proto` under `crs/` with protox (no system `protoc`) and keeps the encoded
//! file descriptor set next to the generated code, for server reflection.

use std::path::{Path, PathBuf};

fn proto_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable proto directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            proto_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut files = Vec::new();
    proto_files(&root.join("crs"), &mut files);
    files.sort();
    println!("cargo:rerun-if-changed=crs");

    let fds = protox::compile(&files, [&root]).unwrap_or_else(|e| panic!("proto compile failed: {e:?}"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::write(out_dir.join("crs_descriptor.bin"), prost::Message::encode_to_vec(&fds))
        .expect("write descriptor set");

    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds).expect("generate gRPC code");
}
