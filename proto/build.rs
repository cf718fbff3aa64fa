//! Compiles `proto/baemin/**.proto` with protox (pure Rust: no `protoc` needed on the machine).

use std::{env, fs, path::PathBuf};

use prost::Message;

const FILES: &[&str] = &[
    "baemin/call/v1/call.proto",
    "baemin/rider/v1/rider.proto",
    "baemin/payment/v1/payment.proto",
    "baemin/report/v1/report.proto",
    "baemin/events/v1/events.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(FILES, [&root])?;
    fs::write(out.join("baemin_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    for file in FILES {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    Ok(())
}
