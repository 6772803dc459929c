/** API keys the API tests configure (API_KEYS): two keys, so each test can show one key's users are not another's. */
export const KEY_A = 'key-a-0123456789abcdefghijklmn';
export const KEY_B = 'key-b-0123456789abcdefghijklmn';
export const API_KEYS = `alpha:${KEY_A}, beta:${KEY_B}`;
