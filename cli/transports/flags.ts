/** The flags every transport's options parse into (commander fills one object for a command). */
export const TRANSPORTS = ['ws', 'nats'] as const;
export type TransportName = (typeof TRANSPORTS)[number];

export interface TransportFlags {
  transport: TransportName;
  natsUrl: string;
  natsSubject: string;
  natsUser?: string;
  natsPass?: string;
  natsToken?: string;
  natsCreds?: string;
  natsNkey?: string;
  natsTlsCa?: string;
  natsTlsCert?: string;
  natsTlsKey?: string;
  natsRequireTls?: boolean;
  natsDeadAfter: number;
}

/** wss:// for `gradfleet coordinator`. */
export interface TlsListenFlags {
  tlsCert?: string;
  tlsKey?: string;
}
