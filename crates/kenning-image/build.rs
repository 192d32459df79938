//! Compiles the small C shim that drives libjpeg with setjmp/longjmp error
//! handling, so a libjpeg error never has to unwind through Rust frames.

fn main() {
    println!("cargo:rerun-if-changed=csrc/jpeg_shim.c");
    let mut build = cc::Build::new();
    // mozjpeg-sys (links = "jpeg") exports its generated and vendored headers.
    if let Some(include) = std::env::var_os("DEP_JPEG_INCLUDE") {
        for dir in std::env::split_paths(&include) {
            build.include(dir);
        }
    }
    build
        .file("csrc/jpeg_shim.c")
        .warnings(true)
        .compile("kenning_jpeg_shim");
}
