/// A configuration problem: a bad file, environment variable or flag, or an unusable amp dir.
///
/// `message` is one line that names the file and line, variable or flag, the value, and
/// the fix.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// `config.toml` is not valid TOML.
        case malformedFile
        /// A value in `config.toml` has the wrong type or is out of range.
        case invalidValue
        /// An `AMP_*` environment variable has a bad value.
        case invalidEnvironment
        /// A command-line value is bad.
        case invalidFlag
        /// The amp dir cannot be created or used.
        case ampDirUnusable
    }

    public var code: Code
    public var message: String
    /// The file the problem is in, if any.
    public var file: String?
    /// The line in `file`, if known.
    public var line: Int?
    /// The key or variable involved.
    public var key: String?

    public init(_ code: Code, _ message: String, file: String? = nil, line: Int? = nil, key: String? = nil) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
        self.key = key
    }

    public var description: String { message }
}
