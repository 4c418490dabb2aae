//! The raw socket baselines of the cluster workloads, both ends: the peer process serves
//! a plain loopback TCP listener next to its gateway, and the driver measures the same
//! shapes of traffic over it with no framework in the way.
//!
//! Each connection opens with a header of one mode byte and a frame count (`u64`, little
//! endian); every frame is a `u32` little-endian length and a postcard body.
//!
//! - [`Mode::Tell`]: `count` frames of `(recipient u64, payload u64)` written through a
//!   64 KiB buffered writer; the peer reads and decodes them and answers with the
//!   payloads' sum as one `u64`, so the driver knows every frame was decoded.
//! - [`Mode::Ask`]: `count` sequential round trips of one `u64` frame each way, echoed
//!   by the peer.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

/// Buffer size of the buffered writer and reader, as in the transport baseline.
const BUFFER: usize = 64 * 1024;
/// The largest frame body either mode sends (two postcard varints of at most 10 bytes).
const MAX_BODY: usize = 20;
/// The recipient written in every tell frame: a fixed id, as one actor receives all.
const RECIPIENT: u64 = 7;

/// What a raw connection carries, announced in its header.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    Tell = 1,
    Ask = 2,
}

/// Accepts raw baseline connections until the process exits; each runs on a task of its
/// own, so the fan-in baseline's connections are read in parallel.
pub(crate) async fn serve(listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                eprintln!("cluster peer: raw accept failed: {error}");
                // An error that persists (out of descriptors) must not spin this task.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(error) = serve_one(stream).await {
                eprintln!("cluster peer: raw connection failed: {error}");
            }
        });
    }
}

async fn serve_one(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(BUFFER, read);
    let mode = read.read_u8().await?;
    let count = read.read_u64_le().await?;
    let mut body = [0u8; MAX_BODY];
    if mode == Mode::Tell as u8 {
        let mut sum = 0u64;
        for _ in 0..count {
            let len = read_body(&mut read, &mut body).await?;
            let (_recipient, payload): (u64, u64) =
                postcard::from_bytes(&body[..len]).map_err(invalid)?;
            sum = sum.wrapping_add(payload);
        }
        write.write_u64_le(sum).await?;
    } else if mode == Mode::Ask as u8 {
        let mut frame = [0u8; 4 + MAX_BODY];
        for _ in 0..count {
            let len = read_body(&mut read, &mut body).await?;
            frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
            frame[4..4 + len].copy_from_slice(&body[..len]);
            write.write_all(&frame[..4 + len]).await?;
        }
    } else {
        return Err(invalid(format!("unknown mode {mode}")));
    }
    Ok(())
}

/// Reads one frame into `body`, refusing a length the modes never send.
async fn read_body(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    body: &mut [u8; MAX_BODY],
) -> io::Result<usize> {
    let len = read.read_u32_le().await? as usize;
    if len > MAX_BODY {
        return Err(invalid(format!("frame of {len} bytes, at most {MAX_BODY}")));
    }
    read.read_exact(&mut body[..len]).await?;
    Ok(len)
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// A connection to the peer's raw listener, with nodelay as the TCP wire sets it.
pub(crate) async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Writes one tell frame per value of `payloads` and returns the sum the peer decoded.
pub(crate) async fn tell(stream: TcpStream, payloads: std::ops::Range<u64>) -> io::Result<u64> {
    let (mut read, write) = stream.into_split();
    let mut write = BufWriter::with_capacity(BUFFER, write);
    write.write_u8(Mode::Tell as u8).await?;
    write.write_u64_le(payloads.end - payloads.start).await?;
    let mut frame = [0u8; 4 + MAX_BODY];
    for n in payloads {
        let len = postcard::to_slice(&(RECIPIENT, n), &mut frame[4..])
            .map_err(invalid)?
            .len();
        frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
        write.write_all(&frame[..4 + len]).await?;
    }
    write.flush().await?;
    read.read_u64_le().await
}

/// Makes `count` sequential round trips and returns each one's time in nanoseconds.
pub(crate) async fn ask(stream: TcpStream, count: u64) -> io::Result<Vec<u64>> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(&[Mode::Ask as u8]).await?;
    write.write_all(&count.to_le_bytes()).await?;
    let mut frame = [0u8; 4 + MAX_BODY];
    let mut body = [0u8; MAX_BODY];
    let mut times = Vec::with_capacity(count as usize);
    for n in 0..count {
        let started = Instant::now();
        let len = postcard::to_slice(&n, &mut frame[4..])
            .map_err(invalid)?
            .len();
        frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
        write.write_all(&frame[..4 + len]).await?;
        let len = read_body(&mut read, &mut body).await?;
        let echoed: u64 = postcard::from_bytes(&body[..len]).map_err(invalid)?;
        if echoed != n {
            return Err(invalid(format!("asked {n}, echoed {echoed}")));
        }
        times.push(started.elapsed().as_nanos() as u64);
    }
    Ok(times)
}
