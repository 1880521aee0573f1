//! Compiles hub/v1/*.proto with protox (pure Rust: no system protoc) and generates the
//! prost types, plus the encoded descriptor set the isp crate reflects over.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["hub/v1/options.proto", "hub/v1/envelope.proto", "hub/v1/payloads.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_imports(true).open_files(files)?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // The encoded set keeps custom options (the data categories); prost-types would drop them.
    std::fs::write(out.join("hub_v1_descriptor.bin"), compiler.encode_file_descriptor_set())?;
    prost_build::Config::new().compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
