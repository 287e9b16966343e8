#if canImport(Glibc)
import Glibc
import SystemSupport
#endif


/// Creates `path` and its missing parents (mode 0700 for new ones).
func makeDirectories(_ path: String, file: String) throws(RegistryProblem) {
    var current = ""
    for part in path.split(separator: "/") {
        current += "/" + part
        if mkdir(current, 0o700) != 0 && errno != EEXIST {
            throw RegistryProblem(file: file, message: "cannot create \(current): \(String(cString: strerror(errno)))")
        }
    }
}

/// Writes `text` to `path` through a temporary file in the same directory and `rename(2)`,
/// so readers see the old or the new content, never a part.
func writeFileAtomically(_ path: String, _ text: String, mode: mode_t) throws(RegistryProblem) {
    let temporary = path + ".tmp-\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else {
        throw RegistryProblem(file: path, message: "cannot write: \(String(cString: strerror(errno)))")
    }
    var bytes = Array(text.utf8)
    var offset = 0
    var failure: Int32 = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress?.advanced(by: offset), $0.count - offset) }
        if n < 0 { if errno == EINTR { continue }; failure = errno; break }
        offset += n
    }
    if failure == 0 && fsync(fd) != 0 { failure = errno }
    close(fd)
    if failure == 0 && rename(temporary, path) != 0 { failure = errno }
    if failure != 0 {
        unlink(temporary)
        throw RegistryProblem(file: path, message: "cannot write: \(String(cString: strerror(failure)))")
    }
}

