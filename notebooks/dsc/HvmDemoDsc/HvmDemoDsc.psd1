@{
    RootModule           = 'HvmDemoDsc.psm1'
    ModuleVersion        = '1.0.0'
    GUID                 = '6f1d2a3c-8e4b-4c1f-9a57-2b0e7d5c9f41'
    Author               = 'hvmagic runbook example'
    Description          = 'Example custom DSC resource copied into the guest by the hvmagic DSC runbook.'
    PowerShellVersion    = '5.1'
    DscResourcesToExport = @('HvmSiteBanner')
}
