/**
 * How a hostile worker lies (test/cluster/hostile-worker.test.ts): `flip-sign` negates its gradients (the norm
 * is unchanged); `scale` multiplies them by 1.5 (inside any outlier factor); `labels` trains on 7s labelled 1;
 * `loss` reports half its loss; `eval` answers evaluations with the true labels; `unassigned` sends each node
 * under the index of one it was not given.
 */
export const LIE_MODES = ['flip-sign', 'scale', 'labels', 'loss', 'eval', 'unassigned'] as const;
export type LieMode = (typeof LIE_MODES)[number];
