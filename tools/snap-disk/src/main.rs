fn main() {
    std::process::exit(snap_disk::main(std::env::args_os()));
}
