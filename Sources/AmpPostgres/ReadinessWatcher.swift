#if canImport(Glibc)
import Glibc
#endif
import CSocket
import CSpawn
import ChildProcess
import Synchronization
import ThreadSupport

/// Learns when PostgreSQL is ready without polling it.
///
/// Two sources, watched together on one blocking thread, first one wins:
/// - a private `sd_notify` socket: Debian's and most distributions' `postgres` are built with
///   systemd support and send `READY=1` / `STOPPING=1` / `STATUS=…` to `$NOTIFY_SOCKET`. The
///   socket lives in the abstract namespace (no file to clean up, no path length limit);
///   `SO_PASSCRED` lets us accept only messages from the postmaster's PID.
/// - an inotify watch on the data directory: without systemd support, line 8 of
///   `postmaster.pid` turns `ready`.
final class ReadinessWatcher: Sendable {
    enum Event: Sendable, Equatable {
        case ready(source: String)
        case stopping
        case status(String)
    }

    /// `NOTIFY_SOCKET` value for the child.
    let notifySocketAddress: String
    private let socketFD: Int32
    private let inotifyFD: Int32
    private let cancelFD: Int32
    private let cancelWriteFD: Int32
    private let closed = Mutex(false)

    init(dataDirectory: String) throws(PostgresError) {
        let name = "amp/notify/\(getpid())/\(SocketDirectory.stableHash(dataDirectory))-\(UInt32.random(in: 0...UInt32.max))"
        notifySocketAddress = "@" + name
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FileSystem.ioError("cannot create the notify socket", errno: errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw[0] = 0  // abstract namespace
            for (i, b) in bytes.prefix(raw.count - 1).enumerated() { raw[i + 1] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + min(bytes.count, 107))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else {
            let e = errno
            Glibc.close(fd)
            throw FileSystem.ioError("cannot bind the notify socket @\(name)", errno: e)
        }
        _ = amp_enable_passcred(fd)
        socketFD = fd
        // inotify is an optimisation for binaries without systemd support; failure is not fatal.
        inotifyFD = inotify_init1(Int32(IN_CLOEXEC))
        if inotifyFD >= 0 {
            _ = inotify_add_watch(inotifyFD, dataDirectory, UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MODIFY))
        }
        var fds: [Int32] = [-1, -1]
        _ = amp_pipe_cloexec(&fds)
        cancelFD = fds[0]
        cancelWriteFD = fds[1]
    }

    /// Watches for events from the process `pid` until ``close()``; `handler` runs on the
    /// watcher thread and must not block. When no thread can be made, the descriptors are
    /// closed and the error thrown.
    func start(pid: pid_t, dataDirectory: String, handler: @escaping @Sendable (Event) -> Void) throws(ThreadStartError) {
        do {
            try startDetachedThread(name: "amp-readiness") { [self] in
                var reportedReady = false
                func checkPidFile() {
                    guard !reportedReady,
                          let text = FileSystem.readText(dataDirectory + "/postmaster.pid"),
                          let file = PostmasterPidFile.parse(text), file.pid == pid, file.isReady else { return }
                    reportedReady = true
                    handler(.ready(source: "postmaster.pid"))
                }
                checkPidFile()
                var fds = [
                    pollfd(fd: socketFD, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: cancelFD, events: Int16(POLLIN), revents: 0),
                ]
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let rc = poll(&fds, nfds_t(fds.count), -1)
                    if rc < 0 { if errno == EINTR { continue } else { break } }
                    if fds[2].revents != 0 { break }
                    if fds[0].revents != 0 {
                        if let (sender, text) = receive(into: &buffer), sender == pid {
                            for line in text.split(separator: "\n") {
                                if line == "READY=1" && !reportedReady {
                                    reportedReady = true
                                    handler(.ready(source: "sd_notify"))
                                } else if line == "STOPPING=1" {
                                    handler(.stopping)
                                } else if line.hasPrefix("STATUS=") {
                                    handler(.status(String(line.dropFirst(7))))
                                }
                            }
                        }
                    }
                    if fds[1].revents != 0 {
                        _ = buffer.withUnsafeMutableBytes { read(inotifyFD, $0.baseAddress, $0.count) }
                        checkPidFile()
                    }
                }
                closeDescriptors()
            }
        } catch {
            closeUnstarted()
            throw error
        }
    }

    /// Receives one datagram; returns the sender's PID (from `SCM_CREDENTIALS`) and the text.
    private func receive(into buffer: inout [UInt8]) -> (pid_t, String)? {
        var sender: pid_t = -1
        let n = buffer.withUnsafeMutableBytes { amp_recv_with_pid(socketFD, $0.baseAddress, $0.count, &sender) }
        guard n > 0 else { return nil }
        return (sender, String(decoding: buffer[0..<n], as: UTF8.self))
    }

    /// Stops the watcher thread; it closes the descriptors on its way out.
    func close() {
        let first = closed.withLock { c -> Bool in
            defer { c = true }
            return !c
        }
        guard first else { return }
        var one: UInt8 = 1
        _ = write(cancelWriteFD, &one, 1)
    }

    /// Closes the descriptors when the watcher thread was never started.
    func closeUnstarted() {
        closed.withLock { $0 = true }
        closeDescriptors()
    }

    private func closeDescriptors() {
        Glibc.close(socketFD)
        if inotifyFD >= 0 { Glibc.close(inotifyFD) }
        Glibc.close(cancelFD)
        Glibc.close(cancelWriteFD)
    }
}
