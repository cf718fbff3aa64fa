//! The baemin command: run the mesh locally (up), one service (serve), and drive it.
