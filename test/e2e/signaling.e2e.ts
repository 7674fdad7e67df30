import { connect, refusal, type TestClient } from '../support/clients';
import { clusterDeployment, embeddedDeployment, type Deployment } from '../support/deployment';
import { eventually } from '../support/gateway';
import { token } from '../support/tokens';

jest.setTimeout(30_000);

const TTL_MS = 1500;
const OFFER = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' };
const CANDIDATE = { candidate: 'candidate:1 1 udp 2122260223 10.0.0.2 54321 typ host', sdpMid: '0', sdpMLineIndex: 0 };

const modes: [string, () => Promise<Deployment>][] = [
  ['embedded', () => embeddedDeployment()],
  ['cluster (two replicas, doctor and patient on different ones)', () => clusterDeployment({ PRESENCE_TTL_MS: String(TTL_MS) })],
];

describe.each(modes)('signaling, %s', (_mode, deploy) => {
  let d: Deployment;
  const open: TestClient[] = [];
  let n = 0;

  beforeAll(async () => {
    d = await deploy();
  });
  afterAll(async () => {
    for (const client of open) client.ws.terminate();
    await d.close();
  });

  /** A fresh consultation per test, so seats never leak between tests. */
  const consultation = () => `c${++n}-${Date.now()}`;
  const path = (id: string, seat: string) => `/ws/signaling/${id}/${seat}`;
  async function seat(replica: number, id: string, role: 'doctor' | 'patient', sub = `${role}-${id}`): Promise<TestClient> {
    const client = await connect(d.ws(replica, path(id, role)), { protocols: ['bearer', token({ sub, role, channels: [`signaling:${id}`] })] });
    open.push(client);
    return client;
  }

  it('relays offer, answer and ICE candidates between the seats, with peer-joined on both sides', async () => {
    const id = consultation();
    const doctor = await seat(0, id, 'doctor');
    const patient = await seat(1, id, 'patient');
    expect(await patient.ofType('peer-joined')).toEqual({ type: 'peer-joined', role: 'doctor' });
    expect(await doctor.ofType('peer-joined')).toEqual({ type: 'peer-joined', role: 'patient' });

    doctor.send({ type: 'offer', payload: { ...OFFER, extra: 'dropped' } });
    expect(await patient.ofType('offer')).toEqual({ type: 'offer', from: 'doctor', payload: OFFER });
    patient.send({ type: 'answer', payload: { type: 'answer', sdp: 'v=0\r\n' } });
    expect(await doctor.ofType('answer')).toEqual({ type: 'answer', from: 'patient', payload: { type: 'answer', sdp: 'v=0\r\n' } });
    for (let i = 0; i < 5; i++) doctor.send({ type: 'ice-candidate', payload: { ...CANDIDATE, sdpMLineIndex: i } });
    for (let i = 0; i < 5; i++) {
      expect(await patient.ofType('ice-candidate')).toEqual({ type: 'ice-candidate', from: 'doctor', payload: { ...CANDIDATE, sdpMLineIndex: i } });
    }
    patient.send({ type: 'ice-candidate', payload: { candidate: '' } });
    expect(await doctor.ofType('ice-candidate')).toEqual({ type: 'ice-candidate', from: 'patient', payload: { candidate: '' } });
  });

  it('answers peer_not_connected while the other seat is empty, and invalid payloads with invalid_message', async () => {
    const id = consultation();
    const doctor = await seat(0, id, 'doctor');
    doctor.send({ type: 'offer', payload: OFFER });
    expect(await doctor.ofType('error')).toMatchObject({ payload: { code: 'peer_not_connected', message: expect.stringContaining('patient') } });
    doctor.send({ type: 'offer', payload: { sdp: 42 } });
    expect(await doctor.ofType('error')).toMatchObject({ payload: { code: 'invalid_message' } });
    doctor.send({ type: 'ice-candidate', payload: { candidate: 'x', sdpMLineIndex: -1 } });
    expect(await doctor.ofType('error')).toMatchObject({ payload: { code: 'invalid_message' } });
    doctor.send({ type: 'hangup' });
    expect(await doctor.ofType('error')).toMatchObject({ payload: { code: 'unknown_type' } });
    expect(doctor.ws.readyState).toBe(doctor.ws.OPEN);
  });

  it('refuses a taken seat (409 role_taken, also from the other replica), a seat that is not your role, and bad paths', async () => {
    const id = consultation();
    await seat(0, id, 'doctor', 'dr-house');
    const second = await refusal(d.ws(1, path(id, 'doctor')), { protocols: ['bearer', token({ sub: 'dr-who', role: 'doctor', channels: [`signaling:${id}`] })] });
    expect(second).toMatchObject({ status: 409, body: { error: 'role_taken' } });
    const wrongSeat = await refusal(d.ws(1, path(id, 'doctor')), { protocols: ['bearer', token({ sub: 'pat', role: 'patient', channels: [`signaling:${id}`] })] });
    expect(wrongSeat).toMatchObject({ status: 403, body: { error: 'forbidden_role' } });
    const nurse = await refusal(d.ws(0, path(id, 'nurse')), { protocols: ['bearer', token({ sub: 'n', role: 'nurse' })] });
    expect(nurse.status).toBe(403); // not a signaling role at all
    const badId = await refusal(d.ws(0, path('x'.repeat(65), 'patient')), { protocols: ['bearer', token({ sub: 'p', role: 'patient', channels: ['signaling:crash'] })] });
    expect(badId).toMatchObject({ status: 400, body: { error: 'bad_request', message: expect.stringContaining('consultationId') } });
  });

  it('tells the remaining seat peer-left on disconnect, and frees the seat for the next one', async () => {
    const id = consultation();
    const doctor = await seat(0, id, 'doctor');
    const patient = await seat(1, id, 'patient');
    await doctor.ofType('peer-joined');
    await patient.close();
    expect(await doctor.ofType('peer-left')).toEqual({ type: 'peer-left', role: 'patient' });
    // The seat is released right after the departure is announced (a few ms; a client retries a 409).
    let next: TestClient | undefined;
    await eventually(async () => {
      next = await seat(0, id, 'patient', 'patient-again').catch((error: { status?: number }) => {
        if (error.status !== 409) throw error;
        return undefined;
      });
      return next !== undefined;
    }, 2000, 'the seat to be free');
    next = next!;
    expect(await next.ofType('peer-joined')).toEqual({ type: 'peer-joined', role: 'doctor' });
    expect(await doctor.ofType('peer-joined')).toEqual({ type: 'peer-joined', role: 'patient' });
    // Nothing out of order: the leave was announced before the seat was free.
    expect(doctor.frames).toEqual([]);
  });
});

describe('signaling when the peer replica dies (cluster)', () => {
  it('sends peer-left to the remaining seat after about the presence TTL', async () => {
    const d = await clusterDeployment({ PRESENCE_TTL_MS: String(TTL_MS) });
    try {
      const doctor = await connect(d.ws(0, '/ws/signaling/crash/doctor'), { protocols: ['bearer', token({ sub: 'd', role: 'doctor', channels: ['signaling:crash'] })] });
      await connect(d.ws(1, '/ws/signaling/crash/patient'), { protocols: ['bearer', token({ sub: 'p', role: 'patient', channels: ['signaling:crash'] })] });
      await doctor.ofType('peer-joined');
      const killedAt = Date.now();
      await d.replicas[1].kill();
      expect(await doctor.ofType('peer-left', TTL_MS * 5)).toEqual({ type: 'peer-left', role: 'patient' });
      expect(Date.now() - killedAt).toBeLessThan(TTL_MS * 4);
      // The seat is free again.
      const patient = await connect(d.ws(0, '/ws/signaling/crash/patient'), { protocols: ['bearer', token({ sub: 'p', role: 'patient', channels: ['signaling:crash'] })] });
      expect(await patient.ofType('peer-joined')).toEqual({ type: 'peer-joined', role: 'doctor' });
      doctor.ws.terminate();
      patient.ws.terminate();
    } finally {
      await d.close();
    }
  });
});
