#if canImport(Glibc)
import Glibc
#endif

/// Reading whole files: the one helper for it in ampd, ampctl and the generator.
public enum FileContents {
    /// What reading a file gave.
    public enum Outcome: Sendable, Equatable {
        case bytes([UInt8])
        /// The file does not exist (ENOENT or ENOTDIR).
        case missing
        /// It exists but could not be read; the `errno` text.
        case unreadable(String)
        /// It is larger than the limit.
        case tooLarge(limit: Int)
    }

    /// The bytes of `path`, at most `limit` of them.
    public static func read(_ path: String, limit: Int = 16 << 20) -> Outcome {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            return errno == ENOENT || errno == ENOTDIR ? .missing : .unreadable(String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return .unreadable(String(cString: strerror(errno)))
            }
            if n == 0 { break }
            guard bytes.count + n <= limit else { return .tooLarge(limit: limit) }
            bytes += chunk[0..<n]
        }
        return .bytes(bytes)
    }

    /// The contents of `path` as text (invalid UTF-8 replaced), or nil when it cannot be read:
    /// for files amp or the kernel wrote (`/proc`, cgroup files, the registry's own files).
    public static func text(_ path: String, limit: Int = 16 << 20) -> String? {
        guard case .bytes(let b) = read(path, limit: limit) else { return nil }
        return String(decoding: b, as: UTF8.self)
    }
}

/// Decodes `bytes` as UTF-8, refusing invalid input: for files a person wrote, whose errors
/// must be named. On failure, the 1-based line and the byte offset of the first bad byte.
public func decodeUTF8Strictly(_ bytes: [UInt8]) -> Result<String, UTF8DecodingError> {
    var decoder = UTF8()
    var iterator = bytes.makeIterator()
    var scalars = String.UnicodeScalarView()
    var line = 1
    var offset = 0
    var consumed = 0
    loop: while true {
        switch decoder.decode(&iterator) {
        case .scalarValue(let s):
            scalars.append(s)
            if s == "\n" { line += 1 }
            consumed += UTF8.width(s)
        case .emptyInput: break loop
        case .error:
            offset = consumed
            return .failure(UTF8DecodingError(line: line, offset: offset))
        }
    }
    return .success(String(scalars))
}

/// Where invalid UTF-8 starts.
public struct UTF8DecodingError: Error, Sendable, Equatable {
    public var line: Int
    public var offset: Int
}
