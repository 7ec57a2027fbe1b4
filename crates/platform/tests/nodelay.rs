//! Every connection a service opens to PostgreSQL sends small writes at once (`TCP_NODELAY`).
//! With Nagle's algorithm on, a write made while an earlier one is not yet acknowledged waits
//! for that acknowledgement, which the server may hold back for its delayed-ACK timer (some
//! 40 ms on Linux). Intake's group-commit transactions, a handful of statements each, took
//! about 100 ms that way, most of it waiting, and intake alone stored a third of what it stores
//! with Nagle off. The database driver once set the option and a release of it stopped doing
//! so; this test notices if that happens again. (Redis keeps Nagle: see
//! `crs_platform::redis`.)
//!
//! The test reads its own process's sockets: each descriptor is duplicated through
//! `pidfd_getfd`, which shares the socket and its options, and asked for its peer and its
//! `TCP_NODELAY`.

use std::net::SocketAddr;
use std::os::fd::RawFd;

use crs_platform::config::DatabaseConfig;
use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
use sea_orm::ConnectionTrait;
use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod support;

/// No migrations: the test connects only.
struct NoMigrations;

impl MigratorTrait for NoMigrations {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}

/// For each TCP connection of this process to `port`: whether it has Nagle off.
fn connections_to(port: u16) -> Vec<bool> {
    let me = pidfd_open(getpid(), PidfdFlags::empty()).expect("pidfd_open");
    let mut nodelay = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let Ok(fd) = entry.expect("fd entry").file_name().to_string_lossy().parse::<RawFd>() else { continue };
        // Gone since it was listed, or not ours to duplicate (the directory's own descriptor).
        let Ok(socket) = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()) else { continue };
        // Not a socket, or not connected.
        let Ok(Some(peer)) = rustix::net::getpeername(&socket) else { continue };
        if SocketAddr::try_from(peer).is_ok_and(|peer| peer.port() == port) {
            nodelay.push(rustix::net::sockopt::tcp_nodelay(&socket).expect("TCP_NODELAY of a TCP socket"));
        }
    }
    nodelay
}

fn port_of(url: &str) -> u16 {
    url::Url::parse(url).expect("a URL").port().expect("a port in the URL")
}

#[tokio::test]
async fn connections_to_postgresql_send_small_writes_at_once() {
    let url = support::admin_url();
    let cfg = DatabaseConfig {
        url: url.clone(),
        max_connections: 2,
        min_connections: 0,
        acquire_timeout_ms: 5_000,
        migrate: false,
    };
    let db = crs_platform::db::connect::<NoMigrations>(&cfg).await.expect("PostgreSQL");
    db.execute_unprepared("SELECT 1").await.expect("a statement");

    let connections = connections_to(port_of(&url));
    assert!(!connections.is_empty(), "the pool holds a connection to {url}");
    assert!(connections.iter().all(|nodelay| *nodelay), "Nagle is on for a connection to PostgreSQL: {connections:?}");
}
