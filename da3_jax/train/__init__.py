"""Training: losses, targets, optimizer, train state/step, checkpoints, the loop, the tasks.

Modules: ``losses`` (L_D, L_M, L_P, L_C, L_grad, the teacher's SSI loss), ``targets``
(reference-frame + scale normalisation, target rays / points / pose encodings), ``optim``
(AdamW, warm-up + cosine, backbone LR multiplier, clipping), ``state`` / ``step`` (jitted step
with donated state and a non-finite guard), ``checkpoint`` (orbax + Grain iterator),
``metrics_writer`` (TensorBoard + console), ``loop`` (``train(config, workdir)``), ``tasks`` /
``da3_tasks`` (teacher and student), ``pseudo_label`` (the labelling job), ``evaluate``.
"""
