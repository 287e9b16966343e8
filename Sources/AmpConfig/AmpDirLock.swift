#if canImport(Glibc)
import Glibc
import SystemSupport
#endif

/// The exclusive lock that makes one `ampd` per amp dir: `flock(2)` on `.amp/ampd.lock`,
/// which the kernel releases when the process dies, however it dies. The file holds the
/// holder's PID for error messages; it is never deleted (deleting lock files races).
public final class AmpDirLock: Sendable {
    private let fd: Int32
    public let path: String

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Why the lock could not be taken.
    public enum Failure: Error, Sendable, Equatable {
        /// Another process holds it; its PID as written in the file, if readable.
        case held(by: Int32?)
        /// The file cannot be opened or locked.
        case io(String)
    }

    /// Takes the lock without waiting.
    public static func acquire(_ path: String) throws(Failure) -> AmpDirLock {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io("cannot open \(path): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 31, 0) }
            close(fd)
            if e == EWOULDBLOCK {
                let text = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : ""
                throw .held(by: Int32(text.split(separator: "\n").first ?? ""))
            }
            throw .io("cannot lock \(path): \(String(cString: strerror(e)))")
        }
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return AmpDirLock(fd: fd, path: path)
    }

    deinit { close(fd) }
}
