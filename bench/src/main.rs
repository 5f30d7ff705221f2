//! `fjord-bench`: not built yet. The storage engine's benchmark is
//! `cargo bench -p fjord-storage --bench storage`.

fn main() {
    eprintln!("fjord-bench: not yet implemented; see `cargo bench -p fjord-storage`");
}
