#if canImport(Glibc)
import Glibc
#endif

/// The configuration layers as read, kept apart so every setting can name its source.
public struct ConfigurationLayers: Sendable {
    public var file: SettingsLayer?
    public var filePath: String
    public var environment: SettingsLayer
    public var commandLine: SettingsLayer
    public var settings: AmpSettings

    /// Layers as given (tests, and callers that read the files themselves).
    public init(file: SettingsLayer?, filePath: String, environment: SettingsLayer, commandLine: SettingsLayer, settings: AmpSettings) {
        self.file = file
        self.filePath = filePath
        self.environment = environment
        self.commandLine = commandLine
        self.settings = settings
    }

    /// Reads config.toml (if any), the environment and the command line; nothing is touched.
    public static func load(ampDir: AmpDirectory, environment: [String: String], workingDirectory: String,
                     commandLine: SettingsLayer = SettingsLayer(), warn: (String) -> Void) throws(ConfigError) -> ConfigurationLayers {
        var settings = AmpSettings()
        var file: SettingsLayer?
        if let (layer, warnings) = try ConfigLoader.readFile(path: ampDir.configFile, baseDirectory: ampDir.base) {
            for w in warnings { warn(w) }
            settings.apply(layer)
            file = layer
        }
        let env = try ConfigLoader.environmentLayer(environment, workingDirectory: workingDirectory)
        settings.apply(env)
        settings.apply(commandLine)
        return ConfigurationLayers(file: file, filePath: ampDir.configFile, environment: env, commandLine: commandLine, settings: settings)
    }

    /// Which layer set a value last (command line > environment > file), for messages.
    public func source<T>(_ key: KeyPath<SettingsLayer, T?>, flag: String, variable: String, fileKey: String) -> String? {
        if commandLine[keyPath: key] != nil { return flag }
        if environment[keyPath: key] != nil { return variable }
        if file?[keyPath: key] != nil { return "\(filePath) \(fileKey)" }
        return nil
    }
}
