import { z } from 'zod';

export const SEATS = ['doctor', 'patient'] as const;
export type Seat = (typeof SEATS)[number];

export function otherSeat(seat: Seat): Seat {
  return seat === 'doctor' ? 'patient' : 'doctor';
}

/** Consultation ids as they appear in the path: short, URL-safe. */
export const CONSULTATION_ID = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,64}$/;

/** RTCSessionDescriptionInit: the SDP of an offer or an answer. Unknown keys are dropped, not relayed. */
const sessionDescription = z.object({
  type: z.enum(['offer', 'answer', 'pranswer', 'rollback']).optional(),
  sdp: z.string().max(60_000),
});

/** RTCIceCandidateInit (an empty candidate string marks the end of candidates). */
const iceCandidate = z.object({
  candidate: z.string().max(4096),
  sdpMid: z.string().max(256).nullable().optional(),
  sdpMLineIndex: z.number().int().min(0).max(1024).nullable().optional(),
  usernameFragment: z.string().max(256).nullable().optional(),
});

/** Client → server frames of `/ws/signaling/:consultationId/:userType`, relayed to the other seat. */
export const SIGNALING_FRAMES = {
  offer: z.object({ type: z.literal('offer'), payload: sessionDescription }),
  answer: z.object({ type: z.literal('answer'), payload: sessionDescription }),
  'ice-candidate': z.object({ type: z.literal('ice-candidate'), payload: iceCandidate }),
};

export type RelayType = keyof typeof SIGNALING_FRAMES;

/** What travels on a consultation's room channel between replicas. */
export type SignalingMessage =
  | { kind: 'relay'; to: Seat; frame: { type: RelayType; from: Seat; payload: unknown } }
  | { kind: 'presence'; to: Seat; frame: { type: 'peer-joined' | 'peer-left'; role: Seat } };
