/** A JSON path as config problems name it: keys joined by dots, array indexes in brackets. */
export const pathText = (path: readonly PropertyKey[]): string =>
  path.reduce<string>(
    (s, k) => (typeof k === 'number' ? `${s}[${k}]` : s ? `${s}.${String(k)}` : String(k)),
    '',
  )
