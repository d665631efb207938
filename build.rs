//! Release executables on Linux are linked with packed relative relocations
//! (`-z pack-relative-relocs`, DT_RELR) when the linker and the C library
//! here support them. Without, the table of relocations the loader applies at
//! start is about 1.8 MB, read in full and then resident for the daemon's
//! whole life; packed, it is a few kilobytes. Nothing else changes.
//!
//! Support is probed by linking and running a trivial C program with the flag:
//! an older linker or C library simply gets the usual table.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|o| o == "linux");
    let host = std::env::var("HOST").ok();
    let target = std::env::var("TARGET").ok();
    // A cross build would probe the wrong toolchain and C library.
    if !(release && linux && host == target) {
        return;
    }
    if packed_relocations_work() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    } else {
        println!(
            "cargo:warning=the linker or C library has no packed relative relocations (binutils 2.38 and glibc 2.36 do): the executable keeps a full relocation table"
        );
    }
}

fn packed_relocations_work() -> bool {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = out.join("relr-probe.c");
    let probe = out.join("relr-probe");
    if std::fs::write(&source, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let linked = Command::new(cc)
        .arg(&source)
        .arg("-o")
        .arg(&probe)
        .arg("-Wl,-z,pack-relative-relocs")
        .arg("-Wl,--fatal-warnings")
        .output()
        .is_ok_and(|o| o.status.success());
    linked && Command::new(&probe).status().is_ok_and(|s| s.success())
}
