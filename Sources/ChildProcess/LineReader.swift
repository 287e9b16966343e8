import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Splits a byte stream into lines.
///
/// Pure logic: feed it the bytes of each `read`, get back the complete lines.
public struct LineSplitter: Sendable {
    private var pending: [UInt8] = []
    /// Longest line kept whole; longer ones are cut (PostgreSQL can log huge statements).
    public let maximumLineLength: Int

    public init(maximumLineLength: Int = 64 * 1024) {
        self.maximumLineLength = maximumLineLength
    }

    /// Returns the lines completed by `bytes`, without their newline.
    public mutating func feed(_ bytes: some Collection<UInt8>) -> [String] {
        var lines: [String] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") {
                lines.append(Self.decode(pending))
                pending.removeAll(keepingCapacity: true)
            } else if pending.count < maximumLineLength {
                pending.append(byte)
            }
        }
        return lines
    }

    /// The unterminated rest, at end of stream.
    public mutating func finish() -> String? {
        defer { pending = [] }
        return pending.isEmpty ? nil : Self.decode(pending)
    }

    private static func decode(_ bytes: [UInt8]) -> String {
        var line = String(decoding: bytes, as: UTF8.self)
        if line.hasSuffix("\r") { line.removeLast() }
        return line
    }
}

/// Drains a descriptor on the calling thread until end of file.
enum LineReader {
    static func drain(fd: Int32, handler: @Sendable ([String]) -> Void) {
        var splitter = LineSplitter()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            if n == 0 { break }
            let lines = splitter.feed(buffer[0..<n])
            if !lines.isEmpty { handler(lines) }
        }
        if let rest = splitter.finish() { handler([rest]) }
    }
}

/// A bounded buffer of a child's last output lines, for error reports.
public final class RecentLines: Sendable {
    private let storage: Mutex<[String]>
    private let capacity: Int

    public init(capacity: Int) {
        self.capacity = capacity
        self.storage = Mutex([])
    }

    public func append(_ lines: [String]) {
        storage.withLock { s in
            s.append(contentsOf: lines)
            if s.count > capacity { s.removeFirst(s.count - capacity) }
        }
    }

    public var lines: [String] { storage.withLock { $0 } }
}
