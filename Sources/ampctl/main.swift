import AmpControl

await AmpctlMain.main()
