#if canImport(Glibc)
import Glibc
#endif

/// A failed file-system call: the path, what was being done, and `errno`'s text.
public struct FileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var action: String
    public var errno: Int32

    public init(path: String, action: String, errno: Int32) {
        self.path = path
        self.action = action
        self.errno = errno
    }

    /// `cannot ACTION PATH: REASON`.
    public var description: String { "cannot \(action) \(path): \(String(cString: strerror(errno)))" }
    /// `errno`'s text alone.
    public var reason: String { String(cString: strerror(errno)) }
}

/// Creates `path` and its missing parents (`mode` for new ones).
public func makeDirectories(_ path: String, mode: mode_t = 0o700) throws(FileError) {
    var current = ""
    for part in path.split(separator: "/") {
        current += "/" + part
        if mkdir(current, mode) != 0 && errno != EEXIST {
            throw FileError(path: current, action: "create", errno: errno)
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, `fsync(2)` (unless
/// `durable` is false: a marker that is simply written again when lost) and `rename(2)`, so
/// readers see the old or the new content, never a part.
public func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t, durable: Bool = true) throws(FileError) {
    let (fd, temporary) = try createTemporaryFile(beside: path, mode: mode)
    var failure: Int32 = writeAll(fd, bytes) ? 0 : errno
    if failure == 0 && durable && fsync(fd) != 0 { failure = errno }
    close(fd)
    if failure == 0 && rename(temporary, path) != 0 { failure = errno }
    if failure != 0 {
        unlink(temporary)
        throw FileError(path: path, action: "write", errno: failure)
    }
}

/// Removes `path` and everything below it without following symbolic links (a link is
/// removed, never its target). A missing `path` is not an error. Descends through directory
/// descriptors (`openat`/`unlinkat`), at most `depthLimit` levels.
public func removeTree(_ path: String, depthLimit: Int = 256) throws(FileError) {
    var st = stat()
    if lstat(path, &st) != 0 {
        if errno == ENOENT { return }
        throw FileError(path: path, action: "remove", errno: errno)
    }
    if (st.st_mode & S_IFMT) != S_IFDIR {
        if unlink(path) != 0 && errno != ENOENT { throw FileError(path: path, action: "remove", errno: errno) }
        return
    }
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard fd >= 0 else { throw FileError(path: path, action: "open", errno: errno) }
    try removeContents(fd, path: path, depth: depthLimit)
    if rmdir(path) != 0 && errno != ENOENT { throw FileError(path: path, action: "remove", errno: errno) }
}

/// Empties the directory open as `fd` (and closes it).
private func removeContents(_ fd: Int32, path: String, depth: Int) throws(FileError) {
    guard let dir = fdopendir(fd) else {
        let e = errno
        close(fd)
        throw FileError(path: path, action: "read", errno: e)
    }
    defer { closedir(dir) }
    guard depth > 0 else { throw FileError(path: path, action: "remove (too deeply nested)", errno: ELOOP) }
    while true {
        errno = 0
        guard let entry = readdir(dir) else {
            if errno != 0 { throw FileError(path: path, action: "read", errno: errno) }
            return
        }
        let name = withUnsafePointer(to: entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
        }
        if name == "." || name == ".." { continue }
        if unlinkat(fd, name, 0) == 0 || errno == ENOENT { continue }
        guard errno == EISDIR else { throw FileError(path: path + "/" + name, action: "remove", errno: errno) }
        let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard child >= 0 else { throw FileError(path: path + "/" + name, action: "open", errno: errno) }
        try removeContents(child, path: path + "/" + name, depth: depth - 1)
        if unlinkat(fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT {
            throw FileError(path: path + "/" + name, action: "remove", errno: errno)
        }
    }
}

/// The space `path` and everything below it take on disk (allocated blocks, as `du` counts
/// them; links are not followed, hard links counted each time), at most `depthLimit` levels
/// deep; 0 when `path` does not exist.
public func diskUsage(_ path: String, depthLimit: Int = 256) -> UInt64 {
    var st = stat()
    guard lstat(path, &st) == 0 else { return 0 }
    var total = UInt64(max(0, st.st_blocks)) &* 512
    guard (st.st_mode & S_IFMT) == S_IFDIR, depthLimit > 0 else { return total }
    for name in listDirectory(path) {
        total = total &+ diskUsage(path + "/" + name, depthLimit: depthLimit - 1)
    }
    return total
}

/// Creates a new, empty file in the directory of `path`, named `.NAME.tmp-` and 16 random hex
/// digits, with `O_CREAT | O_EXCL | O_NOFOLLOW` and `mode`: never a file or a symbolic link
/// that someone else put there under a name they could predict. The caller writes through
/// the descriptor (or hands it to a child), then renames the file over `path` or unlinks it.
///
/// - Returns: the open descriptor (write-only, close-on-exec) and the file's path.
public func createTemporaryFile(beside path: String, mode: mode_t) throws(FileError) -> (fd: Int32, path: String) {
    let directory = path.contains("/") ? String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]) : "."
    let name = path.split(separator: "/").last.map(String.init) ?? "file"
    var lastError: Int32 = EEXIST
    for _ in 0..<100 {
        let suffix = String(UInt64.random(in: .min ... .max), radix: 16)
        let candidate = (directory.isEmpty ? "" : directory + "/") + "." + name + ".tmp-" + String(repeating: "0", count: 16 - suffix.count) + suffix
        let fd = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        if fd >= 0 { return (fd, candidate) }
        lastError = errno
        if errno != EEXIST { break }
    }
    throw FileError(path: path, action: "create a temporary file beside", errno: lastError)
}
