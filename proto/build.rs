//! Compiles the schema with protox (a protobuf compiler written in Rust), so
//! the workspace builds on machines without `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "switchboard/v1/common.proto",
        "switchboard/v1/events.proto",
        "switchboard/v1/commands.proto",
        "switchboard/v1/kafka.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    prost_build::Config::new()
        // Maps must encode in one order, or two runs of one log would differ.
        .btree_map(["."])
        // Serde lets tools print events and state as JSON without a second
        // set of types that would have to be kept in step with the schema.
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .compile_fds(descriptors)?;
    Ok(())
}
