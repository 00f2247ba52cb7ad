//! The Network Block Device protocol: the client that reads a VM's disk
//! through QEMU's NBD server (`client`), the read-only server `snap-disk
//! serve` runs (`server`), and the wire constants both use (`wire`).

pub mod client;
pub mod server;
pub mod wire;

pub use client::*;
pub use wire::*;
