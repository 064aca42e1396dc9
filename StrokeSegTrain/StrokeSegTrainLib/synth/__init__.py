"""Synthetic acute-stroke DWI/ADC cases, physically grounded, for training a starter model without real data.

Pipeline (one module each): ``anatomy`` (procedural brain: GM, WM, deep nuclei, CSF as partial-volume fractions on a
1 mm grid) and ``extracranial`` (skull, scalp, face for unstripped scans) -> ``lesions`` (acute infarcts of sizes and
shapes by mechanism), ``mimics`` (white-matter disease, old infarcts, T2 shine-through) and ``normal_variants``
(normal cortex bright on DWI) -> ``mri_physics`` (S0 and S_b = S0 exp(-b ADC) per compartment) and ``artifacts``
(bias, receive coil, susceptibility) -> ``geometry`` (oblique, permuted, anisotropic scanner grid) and
``acquisition`` (partial volume by supersampling, ``eddy`` misregistration of the b=0 image, Rician noise, ADC from
the noisy signals, stripping, units and dtypes) -> ``generator`` (one case from (seed, index)) -> ``dataset``
(ISLES 2022
Zenodo tree + ``synth_manifest.json``), ``command`` (``strokeseg-train synth``), ``montage`` (PNG for eyeballing).

Public entry points: ``generator.generate_case(seed, index, SynthConfig()) -> SynthCase(dwi, adc, mask, info)``,
``dataset.write_dataset(root, cases, seed, workers)``, ``dataset.read_manifest(root)``,
``montage.save_montage(cases, path)``.
"""
