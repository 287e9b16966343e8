import SystemSupport
/// A memory budget for sizing, parsed and bounded once where it enters (flag, variable or
/// file): `512MB`, `2GB`, `1.5GiB`, `1024` (MB); units are binary (1 GB = 1024 MB).
public struct MemorySize: Sendable, Equatable, Comparable, CustomStringConvertible {
    /// The smallest budget amp sizes for.
    public static let minimum = MemorySize(uncheckedBytes: 16 << 20)
    /// The largest budget amp accepts (1 PiB); larger values are certainly typing errors.
    public static let maximum = MemorySize(uncheckedBytes: 1 << 50)
    /// The accepted range in words, for error messages.
    public static let rangeText = "from 16MB to 1PB, such as \"512MB\" or \"2GB\""

    public let bytes: UInt64

    private init(uncheckedBytes: UInt64) { bytes = uncheckedBytes }

    /// A size of `bytes`, nil outside ``minimum``…``maximum``.
    public init?(bytes: UInt64) {
        guard bytes >= Self.minimum.bytes, bytes <= Self.maximum.bytes else { return nil }
        self.bytes = bytes
    }

    /// Parses `text`; nil when it is not a size or lies outside ``minimum``…``maximum``
    /// (checked before any conversion: no overflow, no silent clamping).
    public init?(parsing text: String) {
        let t = text.trimmingWhitespace
        let digits = t.prefix { ("0"..."9").contains($0) || $0 == "." }
        guard !digits.isEmpty, digits.filter({ $0 == "." }).count <= 1, let n = Double(digits), n.isFinite, n > 0 else { return nil }
        let multiplier: Double
        switch String(t.dropFirst(digits.count)).trimmingWhitespace.lowercased() {
        case "", "m", "mb", "mib": multiplier = 1_048_576
        case "k", "kb", "kib": multiplier = 1024
        case "g", "gb", "gib": multiplier = 1_073_741_824
        case "t", "tb", "tib": multiplier = 1_099_511_627_776
        case "p", "pb", "pib": multiplier = 1_125_899_906_842_624
        default: return nil
        }
        let value = n * multiplier
        guard value.isFinite, value <= Double(Self.maximum.bytes) else { return nil }
        self.init(bytes: UInt64(value.rounded(.down)))
    }

    public static func < (a: MemorySize, b: MemorySize) -> Bool { a.bytes < b.bytes }

    /// Whole megabytes.
    public var megabytes: UInt64 { bytes >> 20 }

    public var description: String {
        bytes % (1 << 30) == 0 ? "\(bytes >> 30)GB" : "\(megabytes)MB"
    }
}
