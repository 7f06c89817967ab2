/**
 * Why a record (or a configuration) was refused. Its message reaches the dead-letter topic and
 * the runtime's log as it is, so say what was wrong and with which value.
 *
 * Any other exception thrown by a transform is reported too, prefixed with its name
 * (`TypeError: ...`), since it is more likely a bug than a verdict on the record.
 */
export class SluiceError extends Error {
  override name = "SluiceError";
}

/** The message a thrown value is reported with: a `SluiceError`'s as it is, others named. */
export function messageOf(thrown: unknown): string {
  return thrown instanceof SluiceError ? thrown.message : String(thrown);
}
