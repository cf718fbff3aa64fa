//! The `baemin` command as a library: clients of the four services, the seed's scenario, the local
//! launcher (`baemin up`) and the commands a person uses to drive the mesh.

pub mod balancer;
pub mod cli;
pub mod clients;
mod commands;
pub mod launcher;
mod print;
pub mod rebuild;
pub mod scenario;
mod status;
pub mod token;

pub use commands::run;
