import { HttpException } from '@nestjs/common';

/** An HTTP API error with the SPEC body `{"error": code, "message": text}` and optional headers. */
export class ApiError extends HttpException {
  constructor(
    status: number,
    readonly code: string,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super({ error: code, message }, status);
  }
}
