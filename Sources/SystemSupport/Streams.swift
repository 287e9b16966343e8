#if canImport(Glibc)
import Glibc
#endif

/// Writes all of `bytes` to `fd`, retrying after EINTR and short writes; false on an error.
@discardableResult
public func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress?.advanced(by: offset), $0.count - offset) }
        if n < 0 {
            if errno == EINTR { continue }
            return false
        }
        offset += n
    }
    return true
}

/// Writes a line on standard output, unbuffered (so it is seen at once in a pipe).
public func printLine(_ text: String) { writeAll(1, Array((text + "\n").utf8)) }

/// Writes a line on standard error.
public func printError(_ text: String) { writeAll(2, Array((text + "\n").utf8)) }

/// Whether to colour what goes to `fileDescriptor`: only on a terminal, never with
/// `NO_COLOR` set (<https://no-color.org>), never with `TERM=dumb`.
public func shouldUseColour(fileDescriptor: Int32 = 2, environment: [String: String]) -> Bool {
    if let v = environment["NO_COLOR"], !v.isEmpty { return false }
    if environment["TERM"] == "dumb" { return false }
    return isatty(fileDescriptor) == 1
}
